# zsg: two commands do everything on a fresh machine (Python 3.11 and the package registries):
#   make book   set up, fetch the assets, execute the book on the default profile, build the HTML
#   make test   set up, fetch what the tests need, run the tests (CI runs exactly this)
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
export HF_HUB_OFFLINE := 1

# Measured wall time of the book's execution per profile (set-up excluded), printed first.
# cpu, 2026-11-21, before the faster engine: 51 runs of 60 steps (part 1's 10 runs took 28 minutes;
# part 2's 41 took 1 h 51 min on two parallel workers, 196 run-minutes); reruns read every run
# back from the run store (2 min 14 s). With the faster engine (2026-11-30, 2 AVX512 cores, bf16)
# chapters 1-3 took 4.6 + 20.7 + 7.0 minutes from an empty cache (chapter 2: three runs that
# generate at 6 steps, 6.7-7.0 minutes each; runs that do not generate: 1.7-2.9 minutes); the whole
# book is measured again once the open issues have changed it. smoke: 6.2 minutes from an empty
# cache (2026-11-30).
BOOK_TIME_cpu   := about 3 hours the first time (measured before the faster engine; under 3 minutes once its runs are stored)
BOOK_TIME_smoke := about 6 minutes the first time (under 1 once its runs are stored)
BOOK_TIME_gpu   := not measured on this machine

.PHONY: book test venv prepare chapters clean

# Everything a build writes (executed notebooks, figures, findings, HTML) is in _build/$(PROFILE)/.
book:
	@echo "make book PROFILE=$(PROFILE): about 3 minutes of set-up on a fresh machine (none once done), then the book $(BOOK_TIME_$(PROFILE)) on 2 cores"
	@$(MAKE) --no-print-directory prepare
	@$(BIN)/python -m zsg_core.book --profile $(PROFILE) --html

# Every chapter executed on the smoke profile, then the tests and those notebooks checked by nbval
# (no cell errors; their kernels write into the smoke build, never the cpu one);
# tests/test_book.py builds the HTML from those notebooks.
test: prepare
	$(BIN)/python -m zsg_core.book --profile smoke
	ZSG_BUILD=$(CURDIR)/_build/smoke $(BIN)/python -m pytest tests _build/smoke/book/[0-9]*.ipynb --nbval-lax

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

prepare: venv
	$(BIN)/zsg prepare

# Each chapter source book/NN_name.py (jupytext py:percent) -> _build/$(PROFILE)/book/NN_name.ipynb
# -> executed by papermill with the profile's parameters, then Jupyter Book (zsg_core/book.py). Chapters share finished
# work through the caches, so a rerun redoes only what is missing.
chapters: venv
	$(BIN)/python -m zsg_core.book --profile $(PROFILE)

clean:
	rm -rf _build
