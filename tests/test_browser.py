"""The built book in a real browser (issue 33 item 3): every page as a reader at 1,280 x 900 px sees
it, with no console error or uncaught exception, no image that fails to load, and no table or figure
wider than the column it sits in.

The browser is Debian's headless Chromium (`/usr/bin/chromium`, package `chromium`; `make test`
installs it where it runs as root), driven by Playwright for Python (requirements-test.txt), which is
pointed at that executable and so never downloads one of its own. Without either, these tests skip.
"""
from __future__ import annotations

import base64
import functools
import tempfile
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

import pytest

from zsg_core import toc

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Route

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (the tests may run as root, where Chromium's sandbox refuses to start), no GPU, and none
# of the browser's own traffic (updates, sync, QUIC probes): the only requests are the pages'.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}  # a laptop: the theme shows both sidebars and the margin
SLACK_PX = 2  # sub-pixel rounding and borders; more than this past the column is a real overflow
SHOTS = Path(tempfile.gettempdir()) / "browser_shots"  # a failing page's screenshot, for the one who fixes it


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the session. Playwright starts it on a fresh user-data-dir of its own
    (a temporary folder, removed at the end), and `check_page` gives each page a fresh context of its
    own: every page is judged as a first visit, with nothing an earlier page stored (the theme
    stores its colour mode on the first). Session-scoped and requested before the book's HTML, so a
    machine without a browser skips before it builds anything."""
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (Debian package chromium; `make test` installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser client: playwright is not importable (pip install -r requirements-test.txt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _only_this_machine(route: Route) -> None:
    """Requests off this machine fail at once (a console error naming the address), instead of
    waiting on a network the test machine may not have: the book must not need one."""
    if urlsplit(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request would bury pytest's output
        pass


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on 127.0.0.1 (a free port), in a thread: the pages load as from a web
    server, where a missing file is a 404 the browser reports, not a file:// oddity."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# Runs in the page once it has loaded; returns what is wrong with its images and widths, and readies
# the screenshot: each offender outlined in red (an outline takes no room: the layout stays), the
# window scrolled to the first.
#
# The column: sphinx-book-theme puts a page's content in `main > .bd-article-container >
# article.bd-article`; the text column is that article's content box (its padding aside: 688 px at
# 1,280 px). Two kinds of content may go further, on purpose:
# - full width: a cell tagged `full-width` (chapter 11's findings table) becomes `div.cell.tag_full-width`,
#   which the theme widens to 136 % of the column, over the margin; what is inside may use that box;
# - margin content (`margin` directive or tag, docutils sidebars) sits in the margin: its own box.
# A table's width is the larger of its box and its scrollWidth: a table that is its own scroll box
# (display: block; overflow: auto) is clipped to the column, yet the reader must scroll it sideways.
CHECK_JS = """
async (slack) => {
  const problems = [];
  const offenders = [];
  // Folded parts (hidden code, dropdowns) opened, as a reader may open them: what they hold counts too.
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  // Every image, lazy ones too, loaded or failed before it is judged (20 s at most).
  const images = [...document.images];
  images.forEach(img => { img.loading = "eager"; });
  const settled = img => img.complete ? null
    : new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); });
  await Promise.race([Promise.all(images.map(settled)), new Promise(done => setTimeout(done, 20000))]);
  await document.fonts.ready;  // the web fonts change the text's widths, hence the tables'
  for (const img of images) {
    if (img.naturalWidth === 0) {
      problems.push(`image did not load: ${img.getAttribute("src")}`);
      offenders.push(img);
    }
  }

  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const contentRight = el => {
    const style = getComputedStyle(el);
    return el.getBoundingClientRect().right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
  };
  const pageRight = document.documentElement.clientWidth;
  const wider = ".cell.tag_full-width, .cell.tag_full_width, .full-width, .full_width, "
              + ".margin, .cell.tag_margin, .marginnote, .sidebar";
  const allowed = el => {
    const box = el.parentElement.closest(wider);
    if (box && article.contains(box)) {
      const what = box.matches(".margin, .cell.tag_margin, .marginnote, .sidebar") ? "margin box" : "full-width box";
      return [Math.min(contentRight(box), pageRight), what];
    }
    return [contentRight(article), "text column"];
  };
  const tables = [...article.querySelectorAll("table")];
  const describe = el => {
    const section = el.closest("section[id]");
    const where = section ? ` in #${section.id}` : "";
    if (el.tagName === "IMG") return `image ${(el.getAttribute("src") || "(no src)").split("/").pop()}${where}`;
    // its caption or first non-empty cell (a pandas table's corner cell is empty)
    const first = [...el.querySelectorAll("caption, th, td")].map(c => c.innerText.trim()).find(t => t) || "";
    return `table ${tables.indexOf(el) + 1} ("${first.replace(/\\s+/g, " ").slice(0, 40)}")${where}`;
  };
  for (const el of article.querySelectorAll("table, img")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // not rendered (display: none)
    const width = Math.max(box.width, el.scrollWidth);
    const right = box.left + width;
    const [limit, within] = allowed(el);
    if (right > limit + slack) {
      problems.push(`${describe(el)} is ${Math.round(width)} px wide and ends at ${Math.round(right)} px, `
                    + `${Math.round(right - limit)} px past the ${within} (which ends at ${Math.round(limit)} px)`);
      offenders.push(el);
    }
  }
  // drawn inside the element's box: a scroll box around a table would clip an outline outside it
  offenders.forEach(el => { el.style.outline = "3px solid red"; el.style.outlineOffset = "-3px"; });
  offenders[0]?.scrollIntoView({block: "center"});  // where the screenshot looks, if one is taken
  return problems;
}
"""


def _where(message: ConsoleMessage) -> str:
    location = message.location
    return f"{location.get('url', '?')}:{location.get('lineNumber', '?')}"


def check_page(browser: Browser, url: str, shot: Path | None = None) -> list[str]:
    """What is wrong with the page at `url` as the browser shows it: console errors and uncaught
    exceptions (from loading to the end of the checks), images that did not load, and tables or
    images past the column they may use. With `shot`, a page with problems is saved there as a
    screenshot of the window at its first offender (outlined in red), or at its top."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} (at {_where(message)})")

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught exception: {error.message}")

    context = browser.new_context(viewport=VIEWPORT)  # empty: no storage, cache or cookies from other pages
    context.set_default_timeout(60_000)  # the machine may be busy (make test runs a worker per core)
    context.route("**/*", _only_this_machine)
    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        page.goto(url, wait_until="load")
        problems += page.evaluate(CHECK_JS, SLACK_PX)
        if problems and shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))  # the window, not the whole page: a long page takes seconds
    finally:
        context.close()
    return problems


# A 1 x 1 PNG: an image that loads.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")

# The theme's structure in miniature: a 600 px text column holding one of each failure (a console
# error, an uncaught exception, a broken image, an image and two tables too wide, one of them clipped
# by its own scroll box), and what must pass: an image that loads and fits, and a table wider than the
# column inside a full-width cell's box.
BAD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body style="margin: 0">
<main><article class="bd-article" style="width: 600px; padding: 0 20px">
  <section id="checked">
    <p>Some text.</p>
    <img src="pixel.png" alt="fine">
    <img src="missing.png" alt="broken">
    <img src="pixel.png?wide" alt="too wide" style="width: 700px">
    <table><tr><td style="min-width: 900px">too wide</td></tr></table>
    <table style="display: block; overflow-x: auto; max-width: 100%">
      <tr><td style="min-width: 900px">scrolls</td></tr>
    </table>
    <div class="cell tag_full-width" style="width: 816px">
      <table style="width: 800px"><tr><td>wide on purpose</td></tr></table>
    </div>
  </section>
  <script>console.error("boom"); undefined_function();</script>
</article></main>
</body></html>
"""


@pytest.mark.slow
def test_the_checker_finds_each_kind_of_failure(chromium: Browser, tmp_path: Path) -> None:
    (tmp_path / "bad.html").write_text(BAD_PAGE)
    (tmp_path / "pixel.png").write_bytes(PIXEL)
    with served(tmp_path) as root:
        problems = check_page(chromium, f"{root}/bad.html")
    said = "\n".join(problems)
    past = "past the text column (which ends at 620 px)"  # 600 px of content after 20 px of padding
    assert any(p.startswith("console error: boom") for p in problems), said
    assert any(p.startswith("console error:") and "missing.png" in p for p in problems), said  # its 404
    assert any(p.startswith("uncaught exception:") and "undefined_function" in p for p in problems), said
    assert "image did not load: missing.png" in problems, said
    assert any(p.startswith("image pixel.png?wide in #checked is 700 px wide") and past in p for p in problems), said
    assert any(p.startswith('table 1 ("too wide") in #checked is 9') and past in p for p in problems), said
    assert any(p.startswith('table 2 ("scrolls")') and past in p for p in problems), said  # by its scrollWidth
    assert len(problems) == 7, said  # and nothing about the fine image or the full-width table


def book_pages(html: Path) -> list[Path]:
    """The pages a reader reads: the intro and each chapter the toc lists (not the search or index
    pages, nor pages of chapters an earlier toc had, which a build folder keeps)."""
    return [html / "book" / f"{name}.html" for name in ["intro", *toc.chapters()]]


@pytest.mark.slow
def test_every_page_shows_without_errors_and_fits_its_column(chromium: Browser, smoke_html: Path) -> None:
    """`smoke_html` (conftest.py) is the smoke book's HTML, built once per test run by whichever
    test asks first (this one or tests/test_book.py); a bare pytest without executed chapters skips."""
    found: dict[str, list[str]] = {}
    with served(smoke_html) as root:
        for path in book_pages(smoke_html):
            name = path.relative_to(smoke_html).as_posix()
            shot = SHOTS / f"{path.stem}.png"
            shot.unlink(missing_ok=True)  # an earlier run's screenshot would blame a page since fixed
            if not path.exists():
                found[name] = ["not built"]
            elif problems := check_page(chromium, f"{root}/{name}", shot):
                found[name] = [*problems, f"screenshot: {shot}"]
    assert not found, "\n".join(f"{name}:\n  " + "\n  ".join(said) for name, said in found.items())
