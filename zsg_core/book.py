"""The executed book: chapter sources -> notebooks -> papermill with a profile -> Jupyter Book HTML.

    python -m zsg_core.book [--profile cpu] [--html]       (what `make book` runs)

Chapter sources are `book/NN_name.py` (jupytext py:percent, a cell tagged `parameters`). Each is
converted to `book/NN_name.ipynb` and executed in place by papermill, in its own kernel, with the
profile's parameters that the chapter declares; a profile key that is neither a chapter's nor a
run's parameter (`zsg train --profile`) is an error. The injected-parameters cell is tagged
`hide-input`. Chapters share work through the caches (assets, splits, embeddings, runs), so a
rerun redoes only what is missing. Paths come from
the package, never from the caller's working directory.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PROFILES = ROOT / "profiles"


class BookError(RuntimeError):
    """A profile or a chapter is wrong, or a chapter failed to execute."""


def chapter_sources() -> list[Path]:
    return sorted(BOOK.glob("[0-9][0-9]_*.py"))


def load_profile(name: str) -> dict:
    import yaml

    path = PROFILES / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(PROFILES.glob("*.yaml")))
        raise BookError(f"no profile {name!r} (profiles: {known})")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise BookError(f"{path}: a profile is a mapping of parameter names to values")
    return params


def convert(source: Path, notebook: Path | None = None) -> Path:
    """book/NN_name.py (py:percent) -> book/NN_name.ipynb (or `notebook`)."""
    import jupytext

    notebook = notebook or source.with_suffix(".ipynb")
    jupytext.write(jupytext.read(source), notebook)
    return notebook


def declared_parameters(notebook: Path) -> set[str]:
    import papermill

    names = set(papermill.inspect_notebook(str(notebook)))
    if not names:
        raise BookError(f"{notebook.name}: no cell tagged 'parameters'")
    return names


def _hide_injected(notebook: Path) -> None:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, notebook)


def run(profile: str = "cpu", log=print) -> list[Path]:
    """Convert and execute every chapter with the profile's parameters; return the notebooks."""
    import papermill

    params = load_profile(profile)
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernels inherit it: no progress bars in the pages
    notebooks = [convert(src) for src in chapter_sources()]
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    from .runs import RUN_PARAMS, SPLIT_PARAMS, TRAIN_PARAMS

    # a key must mean something: a parameter of some chapter, or of a run (`zsg train --profile`)
    unknown = set(params) - set().union(*declared.values(), SPLIT_PARAMS, RUN_PARAMS, TRAIN_PARAMS)
    if unknown:
        raise BookError(f"profile {profile!r} sets parameter(s) {sorted(unknown)} that no chapter or run declares")
    for nb in notebooks:
        start = time.perf_counter()
        log(f"executing {nb.relative_to(ROOT)} (profile {profile})")
        try:
            papermill.execute_notebook(str(nb), str(nb), parameters={k: v for k, v in params.items() if k in declared[nb]},
                                       cwd=str(BOOK), kernel_name="python3", progress_bar=False)
        except papermill.PapermillExecutionError as e:
            raise BookError(f"{nb.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
        _hide_injected(nb)
        log(f"  done in {time.perf_counter() - start:.0f} s")
    return notebooks


def build_html() -> Path:
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(ROOT), "--all", "-W", "-n", "--keep-going"], check=True)
    return ROOT / "_build" / "html" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zsg_core.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", help="profiles/<name>.yaml (smoke, cpu, gpu)")
    parser.add_argument("--html", action="store_true", help="also build the HTML with Jupyter Book")
    args = parser.parse_args(argv)
    try:
        run(args.profile)
        if args.html:
            print(f"the book is at {build_html()}")
    except BookError as e:
        print(f"book: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
