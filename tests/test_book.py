"""The book pipeline: profiles, parameters, execution; and the HTML build (warnings as errors)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from zsg_core import book, config, toc
from zsg_core.experiments import PLANNED_ENV

ROOT = Path(__file__).resolve().parents[1]

TINY = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tiny

# %% tags=["parameters"]
x = 1

# %%
print(x * 2)
'''


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    from zsg_core import util

    (tmp_path / "book").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "book" / "01_tiny.py").write_text(TINY)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_tiny\n")
    monkeypatch.setattr(toc, "BOOK", tmp_path / "book")
    monkeypatch.setattr(config, "PROFILES", tmp_path / "profiles")
    monkeypatch.setattr(toc, "ROOT", tmp_path)
    monkeypatch.setattr(util, "BUILD_ROOT", tmp_path / "_build")
    monkeypatch.setenv("ZSG_BUILD", "")  # records the caller's value: book.run sets it, teardown restores it
    monkeypatch.delenv("ZSG_BUILD")
    return tmp_path


@pytest.mark.slow
def test_a_chapter_runs_with_the_profile_and_hides_the_injected_cell(tiny_book):
    (tiny_book / "profiles" / "p.yaml").write_text("x: 21\n")
    [nb_path] = book.run("p", log=lambda s: None)
    assert nb_path == tiny_book / "_build" / "p" / "book" / "01_tiny.ipynb"  # build output, not the source tree
    assert sorted(p.name for p in (tiny_book / "book").iterdir()) == ["01_tiny.py"]
    nb = nbformat.read(nb_path, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata.tags and "x = 21" in injected[0].source
    outputs = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert "42\n" in outputs
    # the page says what ran (issue 33 item 2): the profile, and each value that differs from the defaults shown
    [said] = [c for c in nb.cells if "what-ran" in c.metadata.get("tags", [])]
    assert "`p` profile" in said.source and "| `x` | `1` | `21` |" in said.source and "mean nothing" not in said.source
    assert nb.cells.index(said) + 1 == next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))


SHOWN_LINE = 76  # characters of code the text column shows without a scroll bar (sphinx-book-theme, 1,280 px)


def test_the_code_a_page_shows_fits_its_text_column():
    """The cells a page shows (tagged verdict or record, `book.convert`) have no line a reader
    must scroll sideways for."""
    import re

    long = [(src.stem, line) for src in toc.chapter_sources()
            for cell in re.split(r"(?m)^(?=# %%)", src.read_text())
            if any(f'"{tag}"' in cell.partition("\n")[0] for tag in book.SHOWN)
            for line in cell.partition("\n")[2].splitlines() if len(line) > SHOWN_LINE]
    assert not long, long[:3]


# plots' tables: a Styler, shown only as a cell's value or through display
TABLE_CALLS = ("table", "verdict_table", "evidence_table")


def dropped_tables(source: str) -> list[str]:
    """The `plots.table` / `plots.verdict_table` calls of a chapter source that a page never shows:
    a bare expression that is not its cell's last statement (Jupyter shows only the last)."""
    import re

    dropped = []
    for cell in re.split(r"(?m)^(?=# %%)", source):
        if "[markdown]" in cell.partition("\n")[0]:
            continue
        body = ast.parse(cell).body
        for statement in body[:-1]:
            call = statement.value if isinstance(statement, ast.Expr) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in TABLE_CALLS:
                dropped.append(ast.unparse(call)[:60])
    return dropped


def test_every_table_a_chapter_makes_reaches_its_page():
    assert dropped_tables("# %%\nplots.table(a)\nplots.table(b)\n") == ["plots.table(a)"]  # the check finds one
    assert dropped_tables("# %%\ndisplay(plots.table(a))\nx = 1\n# %%\nplots.table(b)\n") == []
    dropped = [(src.stem, call) for src in toc.chapter_sources() for call in dropped_tables(src.read_text())]
    assert not dropped, dropped


def test_a_page_shows_only_the_code_that_decides_and_records_verdicts(tmp_path):
    source = tmp_path / "01_c.py"
    source.write_text(TINY + '\n# %% tags=["verdict"]\nfound = x\n\n# %% tags=["record"]\nrecorded = found\n'
                      '\n# %% tags=["hide-cell"]\nsetup = 1\n')
    cells = [c for c in nbformat.read(book.convert(source, tmp_path / "01_c.ipynb"), 4).cells if c.cell_type == "code"]
    tags = {c.source.split()[0]: c.metadata.get("tags", []) for c in cells}
    assert tags == {"x": ["parameters"], "print(x": ["hide-input"], "found": ["verdict", "nbval-check-output"],
                    "recorded": ["record"], "setup": ["hide-cell"]}


@pytest.mark.slow
def test_profile_errors(tiny_book):
    (tiny_book / "profiles" / "bad.yaml").write_text("x: 1\ny: 2\n")
    with pytest.raises(book.BookError, match=r"sets parameter\(s\) \['y'\] that no chapter or run declares"):
        book.run("bad", log=lambda s: None)
    with pytest.raises(config.ProfileError, match="no profile 'nope' \\(profiles: bad\\)"):
        book.run("nope", log=lambda s: None)
    (tiny_book / "profiles" / "more.yaml").write_text("extends: bad\ny: 3\nz: 4\n")
    assert config.load_profile("more") == {"x": 1, "y": 3, "z": 4}  # the base's keys, this one's on top
    (tiny_book / "profiles" / "self.yaml").write_text("extends: self\n")
    with pytest.raises(config.ProfileError, match="extends must name another profile"):
        config.load_profile("self")


@pytest.mark.slow
def test_the_chapter_order_is_the_toc(tiny_book):
    (tiny_book / "book" / "02_second.py").write_text(TINY.replace("# # Tiny", "# # Second")
                                                 + "\n# %%\nif False:\n    findings.record()\n")
    (tiny_book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                        "  - file: book/02_second\n  - file: book/01_tiny\n")
    assert toc.chapters() == ["02_second", "01_tiny"]  # the toc's order, not the file names'
    assert toc.recording_chapters() == ["02_second"]
    (tiny_book / "profiles" / "p.yaml").write_text("x: 1\n")
    assert [nb.stem for nb in book.run("p", log=lambda s: None)] == ["02_second", "01_tiny"]
    assert [nb.stem for nb in book.run("p", log=lambda s: None, only=["01_tiny"])] == ["01_tiny"]
    executed = book.build_dir("p") / "book" / "02_second.ipynb"  # not re-executed: it keeps its outputs
    assert any(cell.get("outputs") for cell in json.loads(executed.read_text())["cells"])
    with pytest.raises(toc.BookError, match=r"no chapter\(s\) \['03_x'\]"):
        book.run("p", log=lambda s: None, only=["03_x"])
    (tiny_book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/03_gone\n")
    with pytest.raises(toc.BookError, match="no chapter source book/03_gone.py"):
        toc.chapters()


@pytest.mark.slow
def test_each_profile_builds_into_its_own_folder(tiny_book):
    import matplotlib.pyplot as plt

    from zsg_core import plots

    for name in ("p", "q"):
        (tiny_book / "profiles" / f"{name}.yaml").write_text("x: 1\n")
        book.run(name, log=lambda s: None)
        fig, ax = plt.subplots()
        ax.set_title(name)
        assert plots.save(fig, "figure") == tiny_book / "_build" / name / "figures" / "figure.png"  # as a kernel would
        plt.close(fig)
    assert (tiny_book / "_build" / "p" / "figures" / "figure.png").read_bytes() != \
        (tiny_book / "_build" / "q" / "figures" / "figure.png").read_bytes()


def test_the_real_toc_lists_every_chapter_source_and_the_intro_names_them_in_order():
    names = toc.chapters()
    assert sorted(names) == sorted(p.stem for p in toc.BOOK.glob("[0-9][0-9]_*.py"))
    intro = (toc.BOOK / "intro.md").read_text()
    assert [intro.index(f"(`{n}`") for n in names] == sorted(intro.index(f"(`{n}`") for n in names)
    assert names[-1] == "11_findings" and "11_findings" not in toc.recording_chapters()


def test_the_real_profiles_only_set_declared_parameters(tmp_path):
    from zsg_core.config import PARAMETERS, run_config, run_params

    declared = set().union(*(book.declared_parameters(book.convert(src, tmp_path / (src.stem + ".ipynb")))
                             for src in toc.chapter_sources()))
    for name in ("smoke", "cpu", "cpu-full", "gpu"):
        profile = config.load_profile(name)
        assert set(profile) <= declared | set(PARAMETERS), name
        assert {"tma_pool_per_task", "tma_near_rounds"} <= set(profile), name  # TMA's sizing, in every profile
        assert "tma_budget" not in profile, name  # chapter 6 computes the budget from tma_near_rounds
        run_config(**run_params(profile))


def test_chapter_defaults_are_the_cpu_profile(tmp_path):
    """A chapter opened in JupyterLab, or run by papermill with no -p, runs the default profile."""
    import papermill

    cpu = config.load_profile("cpu")
    for src in toc.chapter_sources():
        declared = papermill.inspect_notebook(str(book.convert(src, tmp_path / (src.stem + ".ipynb"))))
        for name, value in cpu.items():
            if name in declared:
                assert ast.literal_eval(declared[name]["default"]) == value, f"{src.name}: {name}"


@pytest.mark.slow
def test_book_builds_without_warnings(smoke_html):
    html = smoke_html / "book"
    assert list((book.build_dir("smoke") / "figures").glob("*.png"))  # figures went to the build folder
    assert "Data arrangement and zero-shot generalization" in (html / "intro.html").read_text()
    # a computed sentence of each chapter's "What we saw": its outputs are on the page
    computed = {"01_data": "The default split has", "02_early_generalization": "Held-out loss fell from",
                "03_permutations": "a closer instance arrived in", "04_similarity": "the leading family made up",
                "05_granularity": "the mean gap (fine - coarse over splits)", "06_tma": "Rounds (E8)",
                "07_nearest_first": "The gap to explain", "08_representations": "Within-window rho of the prefix",
                "09_adaptive": "Cost over RT's, corrected for the sitting",
                "10_task_free": "held-out instances from", "11_findings": "parts of the declared family of"}
    assert set(computed) == set(toc.chapters())  # a new chapter names its computed sentence here
    for name in toc.chapters():
        page = (html / f"{name}.html").read_text()
        assert computed[name] in page and "Traceback" not in page, name
        assert not shown_leaks(page), (name, shown_leaks(page))
        assert not unnamed_images(page), (name, unnamed_images(page))


def unnamed_images(page: str) -> list[str]:
    """The images of a page whose alt text is only their file name (myst-nb's default)."""
    from bs4 import BeautifulSoup

    return [img.get("src", "") for img in BeautifulSoup(page, "html.parser").select("img")
            if not img.get("alt") or img["alt"].endswith((".png", ".svg", ".jpg"))]


def test_a_figure_is_described_by_the_prose_above_it(tmp_path):
    cells = [nbformat.v4.new_markdown_cell("## Held-out loss\n\nLeft: the **curves** over "
                                           "[splits](https://x.org); `side_split_seeds` draws."),
             nbformat.v4.new_code_cell("plt.show()", outputs=[nbformat.v4.new_output(
                 "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]),
             nbformat.v4.new_markdown_cell("| a table |\n|---|"),
             nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_markdown_cell("word " * 100),
             nbformat.v4.new_code_cell("plt.show()", outputs=[nbformat.v4.new_output(
                 "display_data", data={"image/png": "iVBORw0KGgo="})])]
    nb = nbformat.v4.new_notebook(cells=cells)
    book.describe_figures(nb)
    described = nb.cells
    assert described[1].metadata["mystnb"]["image"]["alt"] == "Left: the curves over splits; side_split_seeds draws."
    assert "mystnb" not in described[3].metadata  # no figure, no alt
    alt = described[5].metadata["mystnb"]["image"]["alt"]
    assert len(alt) <= book.ALT_CHARS + 4 and alt.endswith(" ...") and alt.startswith("word word")
    img = '<img alt="../_images/ab.png" src="../_images/ab.png"/><img alt="Left: the curves" src="c.png"/>'
    assert unnamed_images(img) == ["../_images/ab.png"]


LEAKS = {"a missing number shown raw": r"\bnan\b|\bNaN\b", "a negative zero": r"-0\.0+\b",
         "a pandas dtype": r"\bdtype: ", "a warning": r"\b[A-Z][a-z]+Warning\b", "a local path": r"/(tmp|root|home)/",
         "a Python list in prose": r"step\(s\) \["}


def shown_leaks(page: str) -> dict[str, str]:
    """What a reader would see on a built page that only the machine should (issue 33): the page's
    text without its code inputs (folded away; the code may say anything), scripts and styles."""
    import re

    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser")
    for element in soup.select(".cell_input, script, style"):
        element.decompose()
    text = soup.get_text(" ")
    return {what: m.group(0) for what, pattern in LEAKS.items() if (m := re.search(pattern, text))}


def test_the_leak_check_finds_what_it_looks_for():
    shown = "<div class='cell_output'><p>p nan; -0.000; dtype: int64; UserWarning: x; /tmp/a; step(s) [5]</p></div>"
    assert set(shown_leaks(shown)) == set(LEAKS)
    folded = "<div class='cell_input'><pre>x = float('nan')  # -0.000 /tmp/</pre></div><p>+0.000, nanoGPT</p>"
    assert shown_leaks(folded) == {}


HIDDEN_OUTPUTS = {"hide-cell", "hide-output", "remove-cell", "remove-output"}  # tags whose outputs a reader does not see


def undescribed(nb: nbformat.NotebookNode) -> list[str]:
    """The figures and tables of an executed chapter with no computed sentence right under them
    (issue 33): the next thing a reader meets must be text a cell computed (a Markdown display),
    not typed prose, another figure or table, or the page's end. A verdict cell's table is the
    verdict itself, said in words by the rule stated above it; streams and hidden outputs are
    not on the page."""
    flow = []
    for i, cell in enumerate(nb.cells):
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown":
            flow.append(("prose", i))
        elif not tags & HIDDEN_OUTPUTS:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "image/png" in data:
                    flow.append(("figure", i))
                elif "<table" in data.get("text/html", ""):
                    flow.append(("verdict table" if "verdict" in tags else "table", i))
                elif "text/markdown" in data:
                    flow.append(("sentence", i))
    return [f"{kind} of cell {i}" for (kind, i), (after, _) in zip(flow, flow[1:] + [("end", -1)])
            if kind in ("figure", "table") and after != "sentence"]


def test_the_sentence_check_finds_a_figure_or_table_with_none_under_it():
    def output(kind: str) -> nbformat.NotebookNode:
        data = {"figure": {"image/png": "iVBORw0KGgo="}, "table": {"text/html": "<table></table>"},
                "sentence": {"text/markdown": "At step 30, NFT is 0.8 above RT."}}[kind]
        return nbformat.v4.new_output("display_data", data=data)

    def notebook(*cells: tuple[list[str], list[str]]) -> nbformat.NotebookNode:
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[output(k) for k in kinds],
                                                                         metadata={"tags": tags}) for kinds, tags in cells])

    assert undescribed(notebook((["figure", "sentence", "table", "sentence"], []))) == []
    assert undescribed(notebook((["figure", "table", "sentence"], []))) == ["figure of cell 0"]
    assert undescribed(notebook((["table"], []), (["sentence"], []))) == []
    assert undescribed(notebook((["table"], []))) == ["table of cell 0"]  # the page's end
    assert undescribed(notebook((["table"], ["verdict"]), (["table"], ["hide-cell"]))) == []
    typed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[output("table")]),
                                            nbformat.v4.new_markdown_cell("## Next"), nbformat.v4.new_code_cell(
                                                "y", outputs=[output("sentence")])])
    assert undescribed(typed) == ["table of cell 0"]


@pytest.mark.slow
def test_every_figure_and_table_a_page_shows_has_a_computed_sentence_under_it(smoke_chapters):
    missing = {name: found for name in toc.chapters()
               if (found := undescribed(nbformat.read(smoke_chapters / f"{name}.ipynb", 4)))}
    assert not missing, missing


# Chapters nbval does not execute again, and why (none now: chapter 8 read its representations' costs
# by measuring them afresh, and now reads them from the runs' manifests like everything else).
NBVAL_SKIPS: set[str] = set()


@pytest.mark.slow
def test_re_executed_chapters_reproduce_their_verdicts(smoke_chapters, tmp_path):
    """nbval, for what it proves: the book is deterministic given its runs, so each chapter
    executed again from the filled run store shows exactly the verdicts it showed (its cells tagged
    `nbval-check-output`: the verdict tables, chapter 7's decomposition, the findings table), and
    trains nothing on the way (`PLANNED_ENV`: a chapter that would train fails)."""
    checked = [nb for nb in sorted(smoke_chapters.glob("*.ipynb")) if nb.stem not in NBVAL_SKIPS
               if any("nbval-check-output" in c.get("metadata", {}).get("tags", []) for c in nbformat.read(nb, 4).cells)]
    assert len(checked) >= 8, [nb.stem for nb in checked]
    env = {**os.environ, "ZSG_BUILD": str(book.build_dir("smoke")), PLANNED_ENV: "1"}
    # a worker per core, each taking whole notebooks (nbval's cells run in order in one kernel: loadscope)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(os.cpu_count() or 1),
                             "--dist", "loadscope", "--nbval-lax",
                             "--nbval-current-env", "--nbval-sanitize-with", str(Path(__file__).parent / "nbval_sanitize.cfg"),
                             "--nbval-cell-timeout", "900", *map(str, checked)],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
