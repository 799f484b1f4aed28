# zsg: two commands do everything on a fresh machine (Python 3.11 and the package registries):
#   make book   set up, fetch the assets, execute the book on the default profile, build the HTML
#   make test   set up, fetch what the tests need, run the tests (CI runs exactly this)
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
export HF_HUB_OFFLINE := 1

# Options for the book's runs, e.g. BOOK_ARGS="--workers 2" or "--ray" or "--ray-address auto"
# (zsg_core/execute.py; README, "Run it faster").
BOOK_ARGS ?=

.PHONY: book test test-fast check-html venv prepare browser chapters clean

# Everything a build writes (executed notebooks, figures, findings, HTML) is in _build/$(PROFILE)/.
# First the plan: every run the chapters read, stored or not, and the predicted time of the rest
# (fitted on the stored runs of this machine's kind); then those runs, under one progress bar; then
# the chapters, which read them.
book:
	@$(MAKE) --no-print-directory prepare
	@$(BIN)/python -m zsg_core.book --profile $(PROFILE) --html $(BOOK_ARGS)

# The tests, in one worker per core (pytest-xdist), and every chapter executed on the smoke profile
# (papermill runs each in a fresh kernel and fails on any cell error): one worker executes the book
# (tests/test_book.py, ZSG_TEST_BOOK=execute) and builds its HTML while the other runs the rest and
# then steals what is left of the first one's share (--dist worksteal), instead of every test
# waiting for the whole book. Figures and findings that tests write go to the smoke build's folder.
test: prepare browser
	ZSG_TEST_BOOK=execute ZSG_BUILD=$(CURDIR)/_build/smoke $(BIN)/python -m pytest -n auto --dist worksteal tests

# The edit loop: every test but those marked slow (they start processes or execute notebooks; see
# pyproject.toml), in one process. `make test` still runs them all.
test-fast: prepare
	$(BIN)/python -m pytest -q -m "not slow" tests

# The page tests (tests/test_book.py's HTML checks, tests/test_browser.py) on a built book of any
# profile, e.g. after `make book`: make check-html PROFILE=cpu
check-html: browser
	ZSG_CHECK_HTML=$(CURDIR)/_build/$(PROFILE)/_build/html $(BIN)/python -m pytest -q tests/test_book.py tests/test_browser.py \
		-k "test_book_builds_without_warnings or test_every_page_shows"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-book.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-book.txt -r requirements-test.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

prepare: venv
	$(BIN)/zsg prepare

# The browser tests/test_browser.py reads the built pages in: Debian's headless Chromium, which
# Playwright (requirements-test.txt) drives instead of downloading its own. Installed where this
# machine can (root, apt-get; the package lists fetched only if the first try finds none); elsewhere
# that test skips, so a machine without it still runs every other test.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; } \
	  || echo "no browser: tests/test_browser.py will skip"; \
	else echo "no browser: tests/test_browser.py will skip"; fi

# Each chapter source book/NN_name.py (jupytext py:percent) -> _build/$(PROFILE)/book/NN_name.ipynb
# -> executed by papermill with the profile's parameters, then Jupyter Book (zsg_core/book.py). Chapters share finished
# work through the caches, so a rerun redoes only what is missing.
chapters: venv
	$(BIN)/python -m zsg_core.book --profile $(PROFILE)

clean:
	rm -rf _build
