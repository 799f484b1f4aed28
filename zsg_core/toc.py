"""The book's chapters: their names and order as `_toc.yml` lists them, and their sources.

Read by the book runner, the plan, the findings chapter and the tests; it needs nothing else of
zsg, so whatever lists chapters sits low in the layers and imports no runner.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


class BookError(RuntimeError):
    """A profile or a chapter is wrong, or a chapter failed to execute."""


def chapters() -> list[str]:
    """The chapters' names in reading order, as `_toc.yml` lists them (its root page aside)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = []
    for entry in toc.get("chapters", []):
        path = Path(entry["file"])
        if path.parent != Path(BOOK.name) or not (BOOK / f"{path.name}.py").exists():
            raise BookError(f"_toc.yml lists {entry['file']!r}, but there is no chapter source {BOOK.name}/{path.name}.py")
        names.append(path.name)
    return names


def chapter_sources() -> list[Path]:
    return [BOOK / f"{name}.py" for name in chapters()]


def recording_chapters() -> list[str]:
    """The chapters that record findings for the findings table (their source calls
    `findings.record`), in reading order."""
    return [src.stem for src in chapter_sources() if "findings.record(" in src.read_text()]


def chapter_defaults(name: str) -> dict:
    """The parameters chapter `name` declares, with their defaults: its cell tagged `parameters`,
    executed as papermill runs it."""
    import jupytext

    source = BOOK / f"{name}.py"
    cells = [c for c in jupytext.read(source).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise BookError(f"{source.name}: no cell tagged 'parameters'")
    defaults: dict = {}
    exec(compile(cells[0].source, str(source), "exec"), {}, defaults)  # the chapter's own code
    return defaults


def chapter_parameters(name: str, profile: dict) -> dict:
    """The parameters chapter `name` runs with under a profile: its defaults, with the profile's
    values for those it declares (what papermill injects)."""
    defaults = chapter_defaults(name)
    return {**defaults, **{k: v for k, v in profile.items() if k in defaults}}
