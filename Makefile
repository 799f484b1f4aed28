# zsg: two commands do everything on a fresh machine (Python 3.11 and the package registries):
#   make book   set up, fetch the assets, execute the book on the default profile, build the HTML
#   make test   set up, fetch what the tests need, run the tests (CI runs exactly this)
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
export HF_HUB_OFFLINE := 1

# Wall time of the book's execution per profile (set-up excluded), printed first.
# cpu, 2026-11-30, 2 AVX512 cores in bf16, measured end to end after the verdict rules (issue 14):
# the chapters' runs took 440 run-minutes when they were trained (each chapter's "What it took",
# from the runs' manifests: 53 + 69 + 145 + 82 + 38 + 53 for chapters 2-7; chapter 3 reuses chapter
# 2's random runs, about 50 of those minutes; some runs shared the cores with other work), and
# executing all eight chapters from the stored runs took 4 minutes (15 / 10 / 151 / 10 / 8 / 10 /
# 8 / 8 s) plus the HTML. Reruns read every run back from the run store. smoke: 6.2 minutes from
# an empty cache (2026-11-30, before the verdict rules).
BOOK_TIME_cpu   := about 6.5-7 hours the first time (per chapter: see each chapter's "What it took"; about 5 minutes once its runs are stored)
BOOK_TIME_smoke := about 6 minutes the first time (under 1 once its runs are stored)
BOOK_TIME_cpu-full := the cpu book plus chapter 7's slow regimes (every layer trained, Gemma-3-270m): not yet timed end to end
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
