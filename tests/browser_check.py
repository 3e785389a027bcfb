"""Open every page of the built book in headless Chromium and check what a reader sees.

Run after ``bash scripts/build_book.sh``::

    python tests/browser_check.py            # exit status 1 when any page has a problem

``tests/test_book.py`` runs the same checks, one test per page (marker ``book``).

For each page listed in ``_toc.yml`` it serves ``_build/html`` on 127.0.0.1 and checks that

- the page loads, and no file it asks the local server for is missing;
- every local image is decoded (``naturalWidth > 0``), and a chapter whose source draws a
  plot shows at least one rendered figure from ``_images/``;
- no shown code scrolls sideways (``book/_static/custom.css`` wraps long lines);
- every internal link points at an existing file, and at an existing ``id`` when it has a
  ``#fragment``;
- a chapter (a notebook page) has a Colab button opening ``notebooks/<chapter>.ipynb`` on
  the branch that ``_config.yml`` names (CI publishes the generated notebooks there);
- chapter 2, and any chapter whose code calls ``synthesis_animation(``, shows a working
  kernel-free animation: the player (``cake_mini.viz.synthesis_animation``, matplotlib's
  jshtml) starts, and moving its slider or pressing "Last frame" changes the frame shown;

and saves a full-page screenshot to ``_build/screenshots/<page>.png``.

Requests to other hosts are blocked, so the check runs offline: external badges are not
checked, and MathJax (loaded from a CDN) renders only when ``CAKE_MINI_MATHJAX_DIR`` names a
local MathJax 3 ``es5`` folder (``npm install mathjax@3`` -> ``node_modules/mathjax/es5``);
then a page with a TeX error (MathJax's red ``merror`` box) fails too. Needs the ``playwright`` Python package and a
Chromium or Chrome binary (Debian: ``apt-get install chromium``; set ``CAKE_MINI_CHROMIUM``
to point elsewhere). ``playwright install`` is never needed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM_CANDIDATES = (
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
)
# --headless is added by playwright (headless=True); the profile is a fresh temporary
# --user-data-dir (playwright refuses that flag in args and takes it as a parameter).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
COLAB_PREFIX = "https://colab.research.google.com/github/"
# A chapter "contains a plot" when its source calls matplotlib or the package's viz helpers.
PLOT_PATTERN = re.compile(r"^\s*[^#\s].*\b(plt\.|matplotlib|viz\.|\.plot\(|imshow\()", re.M)
# Pages that must show a synthesis animation (a static page: no kernel, no widgets), and the
# call that makes any other chapter one of them.
ANIMATION_PAGES = ("notebooks/02_toy_2d",)
ANIMATION_PATTERN = re.compile(r"^\s*[^#\s].*\bsynthesis_animation\(", re.M)
SOURCE_SUFFIXES = (".py", ".md", ".ipynb")


# ---------------------------------------------------------------------------- the book's own files


def _load_yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf8"))


def toc_pages(root: Path = ROOT) -> list[str]:
    """Docnames in ``_toc.yml`` order: the root page, then every chapter and section."""
    toc = _load_yaml(root / "_toc.yml")
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            for key in ("sections", "chapters", "parts"):
                walk(entry.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return pages


def source_of(page: str, root: Path = ROOT) -> Path | None:
    """The source file of a docname (``notebooks/01_x`` -> ``notebooks/01_x.py``), or None."""
    for suffix in SOURCE_SUFFIXES:
        path = root / f"{page}{suffix}"
        if path.is_file():
            return path
    return None


def has_plot(source: Path) -> bool:
    """True when a chapter's code draws a figure (comments and markdown cells don't count)."""
    if source.suffix != ".py":
        return False
    return bool(PLOT_PATTERN.search(source.read_text(encoding="utf8")))


def has_animation(page: str, source: Path | None) -> bool:
    """True when the page must show a working synthesis animation (see ANIMATION_PAGES)."""
    if page in ANIMATION_PAGES:
        return True
    return (source is not None and source.suffix == ".py"
            and bool(ANIMATION_PATTERN.search(source.read_text(encoding="utf8"))))


def expected_colab_url(page: str, root: Path = ROOT) -> str:
    """The URL the Colab button must have: the generated .ipynb on the configured branch."""
    repo = _load_yaml(root / "_config.yml")["repository"]
    org, name = urlsplit(repo["url"]).path.strip("/").split("/")[:2]
    prefix = (repo.get("path_to_book") or "").strip("/")
    prefix = f"{prefix}/" if prefix else ""
    return f"{COLAB_PREFIX}{org}/{name}/blob/{repo['branch']}/{prefix}{page}.ipynb"


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CAKE_MINI_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("google-chrome")


# ------------------------------------------------------------------------- server and browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def serve(html_dir: Path):
    """Serve ``html_dir`` on a free port of 127.0.0.1; yields the base URL (ends with /)."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def find_mathjax() -> Path | None:
    folder = os.environ.get("CAKE_MINI_MATHJAX_DIR")
    if folder and (Path(folder) / "tex-mml-chtml.js").is_file():
        return Path(folder)
    return None


@contextlib.contextmanager
def browser(base_url: str, chromium: str | None = None):
    """A headless Chromium context with a fresh profile that only reaches ``base_url``
    (and the MathJax CDN, answered from ``CAKE_MINI_MATHJAX_DIR`` when that is set)."""
    from playwright.sync_api import sync_playwright

    mathjax = find_mathjax()

    def handle(route):
        url = route.request.url
        if url.startswith(base_url):
            return route.continue_()
        if mathjax is not None and url.startswith(MATHJAX_CDN):
            local = mathjax / urlsplit(url).path.split("/es5/", 1)[1]
            if local.is_file():
                return route.fulfill(path=str(local))
        return route.abort()

    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found: apt-get install chromium, or set CAKE_MINI_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="book-check-profile-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        context.route("**/*", handle)
        try:
            yield context
        finally:
            context.close()


# ----------------------------------------------------------------------------------- the checks

_LOAD_IMAGES_JS = """
async () => {
  const imgs = [...document.images];
  for (const img of imgs) img.loading = "eager";
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done);
    setTimeout(done, 10000);
  })));
  return imgs.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}
"""
# Wait for MathJax when it loaded; count formulas it left as raw TeX (unbalanced braces),
# marked as a TeX error, or showed with an undefined macro in red (MathJax's noundefined).
# -1: MathJax is not on the page.
_MATH_ERRORS_JS = """
async () => {
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return -1;
  await MathJax.startup.promise;
  const raw = [...document.querySelectorAll(".math")]
    .filter(el => !el.querySelector("mjx-container")).length;
  const bad = Array.from(MathJax.startup.document.math)
    .map(item => MathJax.startup.toMML(item.root))
    .filter(mml => /<merror|<mtext mathcolor="red">\\\\/.test(mml)).length;
  return raw + bad;
}
"""
_LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"
# Code blocks (cell inputs and code in the text) that are visible and wider than their box:
# the longest line of each.
_WIDE_CODE_JS = """
() => [...document.querySelectorAll("div.cell_input pre, div[class*='highlight-'] > div.highlight pre")]
  .filter(pre => pre.offsetParent !== null && pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => pre.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), "").trim())
"""
# Each jshtml player: wait until its script has shown the first frame, then drag the slider
# to the last frame (an `input` event, as a mouse would send) and back to the first.
_ANIMATION_JS = """
async () => {
  const decoded = async img => { try { await img.decode(); } catch (e) {} return img.naturalWidth; };
  const players = [...document.querySelectorAll("div.animation")];
  const result = [];
  for (const player of players) {
    const img = player.querySelector("img"), slider = player.querySelector("input.anim-slider");
    if (!img || !slider) { result.push({error: "player without an image or a slider"}); continue; }
    for (let i = 0; i < 60 && !img.getAttribute("src"); i++) await new Promise(r => setTimeout(r, 50));
    const first = img.getAttribute("src") || "", firstWidth = await decoded(img);
    const last = Number(slider.max);
    slider.value = String(last);
    slider.dispatchEvent(new Event("input", {bubbles: true}));
    const moved = img.getAttribute("src") || "", movedWidth = await decoded(img);
    slider.value = "0";
    slider.dispatchEvent(new Event("input", {bubbles: true}));
    const back = img.getAttribute("src") || "";
    result.push({id: slider.id, frames: last + 1, started: first !== "", firstWidth, movedWidth,
                 changed: moved !== first, back: back === first});
  }
  return result;
}
"""


def check_animation(tab) -> list[str]:
    """Problems with the synthesis animations on the open page (empty list: they work)."""
    players = tab.evaluate(_ANIMATION_JS)
    if not players:
        return ["no synthesis animation on the page (a div.animation player, made by "
                "cake_mini.viz.synthesis_animation)"]
    problems = []
    for p in players:
        name = f"animation {p.get('id', '?')}"
        if "error" in p:
            problems.append(f"{name}: {p['error']}")
        elif not p["started"]:
            problems.append(f"{name}: its script never showed a frame (JavaScript blocked or broken?)")
        elif p["frames"] < 2:
            problems.append(f"{name}: the slider has {p['frames']} frame(s); an animation needs 2 or more")
        elif not p["changed"] or not p["back"]:
            problems.append(f"{name}: moving the slider did not change the frame shown")
        elif not (p["firstWidth"] > 0 and p["movedWidth"] > 0):
            problems.append(f"{name}: a frame image did not decode")
    if not problems:  # a real click on a button too, not only a scripted slider
        button = tab.locator("div.animation button[title='Last frame']").first
        img = tab.locator("div.animation img").first
        before = img.get_attribute("src")
        button.click()
        if img.get_attribute("src") == before:
            problems.append("pressing the animation's 'Last frame' button did not change the frame shown")
    return problems


@functools.lru_cache(maxsize=None)
def _ids_in(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf8", errors="replace")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', text))


def _check_internal_link(href: str, base_url: str, html_dir: Path) -> str | None:
    """None if ``href`` (absolute, on base_url) resolves to a file and anchor, else why not."""
    parts = urlsplit(href)
    rel = unquote(parts.path).lstrip("/")
    target = html_dir / rel
    if rel == "" or rel.endswith("/"):
        target = target / "index.html"
    if not target.is_file():
        return f"broken link {href}: {target.relative_to(html_dir)} does not exist"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in _ids_in(target):
        return f"broken link {href}: no id {fragment!r} in {target.relative_to(html_dir)}"
    return None


def check_page(
    context,
    base_url: str,
    page: str,
    *,
    root: Path = ROOT,
    html_dir: Path | None = None,
    screenshot_dir: Path | None = None,
) -> list[str]:
    """Load one page and return its problems (empty list: the page is fine)."""
    html_dir = html_dir or root / "_build" / "html"
    screenshot_dir = screenshot_dir or root / "_build" / "screenshots"
    if not (html_dir / f"{page}.html").is_file():
        return [f"{page}.html is missing from {html_dir}: rebuild with scripts/build_book.sh"]
    source = source_of(page, root)
    problems: list[str] = []
    missing: list[str] = []

    tab = context.new_page()
    tab.on(
        "response",
        lambda r: missing.append(f"{r.status} {r.url}")
        if r.url.startswith(base_url) and r.status >= 400 and not r.url.endswith("favicon.ico")
        else None,
    )
    try:
        response = tab.goto(f"{base_url}{page}.html", wait_until="load", timeout=60_000)
        if response is None or response.status != 200:
            problems.append(f"page did not load: {response and response.status}")
            return problems

        images = tab.evaluate(_LOAD_IMAGES_JS)
        local = [img for img in images if img["src"].startswith(base_url)]
        for img in local:
            if img["width"] == 0:
                problems.append(f"broken image {img['src']}")
        figures = [img for img in local if "/_images/" in img["src"] and img["width"] > 0]
        if source is not None and has_plot(source) and not figures:
            problems.append("the chapter draws a plot, but no figure from _images/ is shown")

        math_errors = tab.evaluate(_MATH_ERRORS_JS)
        if math_errors > 0:
            problems.append(f"{math_errors} formula(s) that MathJax cannot render")

        wide = tab.evaluate(_WIDE_CODE_JS)
        if wide:
            problems.append(f"{len(wide)} code block(s) scroll sideways (book/_static/custom.css should "
                            f"wrap them), e.g. the line {wide[0][:80]!r}")

        if has_animation(page, source):
            problems.extend(check_animation(tab))

        hrefs = tab.evaluate(_LINKS_JS)
        for href in sorted(set(hrefs)):
            if href.startswith(base_url):
                why = _check_internal_link(href, base_url, html_dir)
                if why:
                    problems.append(why)

        if source is not None and source.suffix in (".py", ".ipynb"):
            want = expected_colab_url(page, root)
            colab = sorted({h for h in hrefs if h.startswith(COLAB_PREFIX)})
            if not colab:
                problems.append(f"no Colab launch link (expected {want})")
            elif colab != [want]:
                problems.append(f"Colab link is {colab}, expected {want}")

        shot = screenshot_dir / f"{page}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(shot), full_page=True)
    finally:
        tab.close()
    problems.extend(f"missing resource: {m}" for m in missing)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (has _toc.yml)")
    parser.add_argument("--html", type=Path, help="built book (default ROOT/_build/html)")
    parser.add_argument("--screenshots", type=Path, help="default ROOT/_build/screenshots")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    html_dir = (args.html or root / "_build" / "html").resolve()
    if not html_dir.is_dir():
        print(f"{html_dir} does not exist: run scripts/build_book.sh first", file=sys.stderr)
        return 2
    failed = 0
    with serve(html_dir) as base_url, browser(base_url) as context:
        for page in toc_pages(root):
            problems = check_page(
                context, base_url, page, root=root, html_dir=html_dir,
                screenshot_dir=args.screenshots,
            )
            print(f"{'FAIL' if problems else 'ok  '} {page}")
            for problem in problems:
                print(f"     - {problem}")
            failed += bool(problems)
    print(f"{failed} page(s) with problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
