"""The executed book: chapter sources -> notebooks -> papermill with a profile -> Jupyter Book HTML.

    python -m zsg_core.book [--profile cpu] [--html] [--only CHAPTER ...] [--workers N] [--ray]
                                                        (what `make book` runs)

First the plan: every run the chapters read, listed with its predicted cost (`zsg plan`); the runs
the store lacks are trained (one after another here, or on worker processes or Ray: `execute`);
then the chapters are executed, and read their runs back.

The chapters and their order are `_toc.yml`'s, read here, by the findings chapter and by the
tests. Each chapter source `book/NN_name.py` (jupytext py:percent, a cell tagged `parameters`) is
converted to a notebook in the profile's build folder and executed there by papermill, in its own
kernel, with the profile's parameters that the chapter declares; a profile key that is neither a
chapter's nor a run's parameter (`config.PARAMETERS`) is an error. A page shows the code of the
cells that decide and record its verdicts and folds the rest away (`convert`); the
injected-parameters cell is folded too, and a sentence above the parameters cell says which
profile built the page and what it changed.

Everything a build writes lives in `_build/<profile>/` (`build_dir`): the executed notebooks
under `book/`, the figures under `figures/`, the findings records under `findings/`, and the
HTML under `_build/html/`. So a smoke build never overwrites a cpu build's figures, and the source
tree holds sources only. Kernels find the folder in `$ZSG_BUILD`, which the runner sets; a chapter
run by hand (JupyterLab, papermill) writes into the default profile's folder unless `ZSG_BUILD`
names another. Chapters share work through the caches (assets, splits, embeddings, runs), so a
rerun redoes only what is missing.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from . import toc
from .config import PARAMETERS, load_profile
from .costs import CostModel, manifests
from .data import DataError
from .execute import add_arguments, from_arguments, train_missing
from .experiments import PLANNED_ENV
from .plan import book_plan, render
from .toc import BookError, chapter_defaults, chapter_sources, chapters
from .util import BUILD_ENV, DEFAULT_PROFILE, build_dir

# What a page shows of a chapter's code: the calls that decide and record its verdicts, which a
# reader of a reproduction wants to check, and nothing else (the rest folds away with its input).
SHOWN = ("verdict", "record")  # cell tags: the rule's call and its table; `findings.record`
FOLDED = ("hide-input", "hide-cell", "remove-input", "remove-cell")


def convert(source: Path, notebook: Path) -> Path:
    """book/NN_name.py (py:percent) -> `notebook`, with each code cell's display decided here: a
    cell tagged `verdict` or `record` shows its code (a `verdict` cell's outputs are also checked
    on re-execution: `nbval-check-output`), the parameters cell shows the defaults, and every other
    code cell folds its input away (`hide-input`) unless its tags fold more (a table checked on
    re-execution that is not a rule's call, as the findings chapter's, is tagged
    `nbval-check-output` alone, and folds)."""
    import jupytext

    nb = jupytext.read(source)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if cell.cell_type != "code" or "parameters" in tags:
            continue
        if "verdict" in tags:
            tags.append("nbval-check-output")
        elif not set(SHOWN + FOLDED) & set(tags):
            tags.append("hide-input")
    notebook.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, notebook)
    return notebook


def declared_parameters(notebook: Path) -> set[str]:
    import papermill

    names = set(papermill.inspect_notebook(str(notebook)))
    if not names:
        raise BookError(f"{notebook.name}: no cell tagged 'parameters'")
    return names


@contextlib.contextmanager
def set_env(name: str, value: str) -> Iterator[None]:
    """`name` set to `value` inside (for the kernels started there), as it was after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _show_what_ran(notebook: Path, profile: str, injected: dict) -> None:
    """Give the figures their alt texts (`describe_figures`), fold the injected-parameters cell away
    and say instead, in a sentence above the parameters
    cell (which shows the chapter's defaults), which profile built the page and every value it
    ran with that differs from them; a page built on a tiny random-init model says its numbers mean
    nothing."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    defaults = chapter_defaults(notebook.stem)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    position = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    describe_figures(nb)
    if position is None or any("what-ran" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        nbformat.write(nb, notebook)
        return
    changed = {k: v for k, v in injected.items() if k in defaults and defaults[k] != v}
    text = f"**This page was built with the `{profile}` profile**"
    if str(injected.get("model", defaults.get("model", ""))).startswith("tiny-"):
        text += " (a tiny random-init model, for tests: its numbers mean nothing)"
    text += ("; it ran with the defaults below." if not changed else
             ". It ran with the defaults below except:\n\n| parameter | default | this page |\n|---|---|---|\n"
             + "".join(f"| `{k}` | `{defaults[k]!r}` | `{v!r}` |\n" for k, v in changed.items()))
    nb.cells.insert(position, nbformat.v4.new_markdown_cell(text, metadata={"tags": ["what-ran"]}))
    nbformat.write(nb, notebook)


ALT_CHARS = 300  # an image's alt text: the first sentences of the prose above it, cut at a word


def describe_figures(nb) -> None:
    """Give each figure of a notebook (an nbformat node) an alt text: the paragraph above its cell,
    which says what it shows (the chapters write one above every figure), as plain text. Without it
    myst-nb writes the image's file name, which tells a screen reader nothing. Set in the cell's
    `mystnb.image.alt`."""
    above = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            paragraphs = [p for p in cell.source.split("\n\n") if p.strip() and not p.lstrip().startswith("|")]
            above = paragraphs[-1] if paragraphs else above
            continue
        if not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])) or not above:
            continue
        text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", above)  # a link's words, not its address
        text = " ".join(re.sub(r"[#*`>]", "", text).split())  # underscores stay: they are in names
        if len(text) > ALT_CHARS:
            text = text[:ALT_CHARS].rsplit(" ", 1)[0] + " ..."
        cell.metadata.setdefault("mystnb", {}).setdefault("image", {})["alt"] = text


def train_plan(profile: str, only: list[str] | None = None, executor=None, log=print) -> None:
    """Print the plan of the chapters' runs (`zsg plan`), then train the ones the store lacks
    with `executor` (default: one after another, in this process), so that the chapters only read."""
    plan = book_plan(profile, only)
    log(render(plan, CostModel.fit(manifests())))
    if plan.unsized:
        log("sizing the runs that wait on it (embedding the TMA pools; cached after)")
        plan = book_plan(profile, only, size=True)
        log(render(plan, CostModel.fit(manifests())))  # now with every run, priced where it can be
    if executor is None:
        train_missing(plan, log=log)
    else:
        train_missing(plan, executor, log=log)


def run(profile: str = DEFAULT_PROFILE, log=print, only: list[str] | None = None, executor=None) -> list[Path]:
    """Train the runs the chapters (or those named in `only`) read (`train_plan`), then convert
    and execute the chapters with the profile's parameters; return the notebooks."""
    import papermill

    params = load_profile(profile)
    build = build_dir(profile)
    os.environ[BUILD_ENV] = str(build)  # the kernels inherit it: figures and findings go there
    os.environ.setdefault("TQDM_DISABLE", "1")  # likewise: no progress bars in the pages
    sources = chapter_sources()
    if only:
        unknown_chapters = set(only) - {src.stem for src in sources}
        if unknown_chapters:
            raise BookError(f"no chapter(s) {sorted(unknown_chapters)}; the chapters are {[src.stem for src in sources]}")
    with tempfile.TemporaryDirectory() as tmp:  # a chapter not executed keeps its executed notebook
        notebooks = [convert(src, (build / toc.BOOK.name if not only or src.stem in only else Path(tmp)) / f"{src.stem}.ipynb")
                     for src in sources]
        declared = {nb.stem: declared_parameters(nb) for nb in notebooks}
    # a key must mean something: a parameter of some chapter, or of a run (`zsg train --profile`)
    unknown = set(params) - set().union(*declared.values(), PARAMETERS)
    if unknown:
        raise BookError(f"profile {profile!r} sets parameter(s) {sorted(unknown)} that no chapter or run declares")
    train_plan(profile, only, executor, log)

    executed = []
    with set_env(PLANNED_ENV, "1"):  # the kernels inherit it: a chapter reading a run the plan missed fails
        for nb in notebooks:
            if only and nb.stem not in only:
                continue
            executed.append(nb)
            start = time.perf_counter()
            log(f"executing {nb.stem} (profile {profile}) in {nb.parent}")
            try:
                papermill.execute_notebook(str(nb), str(nb), parameters={k: v for k, v in params.items()
                                                                         if k in declared[nb.stem]},
                                           cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
            except papermill.PapermillExecutionError as e:
                raise BookError(f"{nb.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
            _show_what_ran(nb, profile, {k: v for k, v in params.items() if k in declared[nb.stem]})
            log(f"  done in {time.perf_counter() - start:.0f} s")
    return executed


def build_html(profile: str = DEFAULT_PROFILE) -> Path:
    """Render the profile's executed notebooks with Jupyter Book (warnings are errors); the HTML's
    index. The book's configuration, table of contents and prose pages are copied beside them."""
    build = build_dir(profile)
    missing = [name for name in chapters() if not (build / toc.BOOK.name / f"{name}.ipynb").exists()]
    if missing:
        raise BookError(f"chapter {missing[0]} has not been executed for profile {profile!r}: "
                        f"run `python -m zsg_core.book --profile {profile}` first")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(toc.ROOT / name, build / name)
    shutil.copytree(toc.ROOT / "_static", build / "_static", dirs_exist_ok=True)  # the book's stylesheet
    for page in toc.BOOK.glob("*.md"):
        shutil.copy2(page, build / toc.BOOK.name / page.name)
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(build), "--all", "-W", "-n", "--keep-going"], check=True)
    return build / "_build" / "html" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zsg_core.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="zsg_core/profiles/<name>.yaml (smoke, cpu, gpu)")
    parser.add_argument("--html", action="store_true", help="also build the HTML with Jupyter Book")
    parser.add_argument("--only", nargs="+", metavar="CHAPTER", help="execute only these chapters (e.g. 04_similarity)")

    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(args.profile, only=args.only, executor=from_arguments(args))
        if args.html:
            print(f"the book is at {build_html(args.profile)}")
    except (BookError, DataError) as e:
        print(f"book: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
