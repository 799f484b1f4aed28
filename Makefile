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
# 8 / 8 s) plus the HTML. Reruns read every run back from the run store.
# Issue 15 (TMA as the paper ran it, chapter 7) adds, measured per run on the same machine: sizing
# TMA (embedding 5 pools of ~15,000: ~35 min, once), 15 one-pass E6 runs of ~320 steps (~12 min
# for a split's first, which fills the frozen-layer cache, ~8 min for the others), 6 MIN/MAX runs
# (~8 min), 9 E8 runs (~2.5 min) in place of chapter 6's 38 run-minutes, and chapter 7's 19 new
# runs (95-105 s each); E7's runs are redone (its tma-* keys changed) at their old cost: about 4
# hours more, so about 11 hours in all, an estimate until the whole cpu book has run again.
# Issue 16 (chapter 8, which similarity), measured 2026-11-30 on the same machine: its first
# execution took 64 minutes (3,811 s): 12 new runs, 48 run-minutes, of which the features of 3
# splits (hidden ~2 minutes, gradient ~8 per split, computed in each split's first run of the
# kind); the held-out prompts' features (gradient: the model's own answers) and E3's measures by
# kind ~12 minutes; the cost cell ~3. From its stored runs and features: 4 minutes (243 s).
# smoke: 10.6 minutes from an empty cache (2026-11-30, chapters 1-10: 112 / 60 / 67 / 100 / 26 / 58 /
# 41 / 97 / 66 / 8 s), 2.6 minutes once its runs and caches are stored. `make test` from a clean
# clone: 20.5 minutes with an empty cache (set-up 3.5, smoke book 10.6, pytest 6.4), 7.8 warm.
BOOK_TIME_cpu   := about 12 hours the first time, estimated from measured runs (per chapter: see each chapter's 'What it took'; about 5 minutes once its runs are stored)
BOOK_TIME_smoke := about 10.5 minutes the first time (under 3 once its runs are stored)
BOOK_TIME_cpu-full := the cpu book plus chapter 7's slow regimes (every layer trained, Gemma-3-270m): not yet timed end to end
BOOK_TIME_gpu   := not measured on this machine

.PHONY: book test venv prepare chapters clean

# Everything a build writes (executed notebooks, figures, findings, HTML) is in _build/$(PROFILE)/.
book:
	@echo "make book PROFILE=$(PROFILE): about 3 minutes of set-up on a fresh machine (none once done), then the book $(BOOK_TIME_$(PROFILE)) on 2 cores"
	@$(MAKE) --no-print-directory prepare
	@$(BIN)/python -m zsg_core.book --profile $(PROFILE) --html

# Every chapter executed on the smoke profile (papermill runs each in a fresh kernel and fails on
# any cell error), then the tests; tests/test_book.py builds the HTML from those notebooks.
# (nbval re-executed the same notebooks a second time, 2.3 of 24.5 minutes, and proved nothing more.)
# The tests run in one worker per core (pytest-xdist): most of them start processes or load models
# one thread at a time, so one process alone left a core idle for much of their 6.4 minutes.
test: prepare
	$(BIN)/python -m zsg_core.book --profile smoke
	ZSG_BUILD=$(CURDIR)/_build/smoke $(BIN)/python -m pytest -n auto tests

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
