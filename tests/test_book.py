"""The book: chapter files and configuration (fast), and the built HTML in a browser (``book``).

The browser tests need a built book and skip without one::

    bash scripts/build_book.sh          # executes every chapter at CAKE_MINI_SIZE=smoke
    pytest -m book tests/test_book.py   # one test per page; screenshots in _build/screenshots/
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"

yaml = pytest.importorskip("yaml", reason="the book tests need PyYAML (pip install -e '.[book]')")

_spec = importlib.util.spec_from_file_location("browser_check", Path(__file__).with_name("browser_check.py"))
browser_check = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("browser_check", browser_check)
_spec.loader.exec_module(browser_check)

PAGES = browser_check.toc_pages(ROOT)
CHAPTERS = [page for page in PAGES if page.startswith("notebooks/")]


def jupytext_header(path: Path) -> dict:
    """The YAML header of a py:percent file (the ``# ---`` block at its top), or {}."""
    lines = path.read_text(encoding="utf8").splitlines()
    if not lines or lines[0].rstrip() != "# ---":
        return {}
    body = []
    for line in lines[1:]:
        if line.rstrip() == "# ---":
            return yaml.safe_load("\n".join(body)) or {}
        body.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    return {}


# --------------------------------------------------------------------------------- fast checks


@pytest.mark.parametrize("page", PAGES)
def test_toc_page_exists(page):
    assert browser_check.source_of(page, ROOT) is not None, (
        f"_toc.yml lists {page!r}, but none of {page}.py/.md/.ipynb exists"
    )


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_is_py_percent_with_kernelspec(page):
    source = ROOT / f"{page}.py"
    assert source.is_file(), f"chapter {page} must be a py:percent file {page}.py"
    header = jupytext_header(source).get("jupyter", {})
    fmt = header.get("jupytext", {}).get("text_representation", {}).get("format_name")
    assert fmt == "percent", f"{source.name}: jupytext header must say format_name: percent, got {fmt!r}"
    kernel = header.get("kernelspec", {})
    # Without a kernelspec the page is not a notebook for the theme: no Colab button.
    assert kernel.get("name") == "python3" and kernel.get("language") == "python", (
        f"{source.name}: jupytext header needs kernelspec name: python3, language: python; got {kernel}"
    )


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_installs_cake_mini_when_missing(page):
    # The Colab copy is the same notebook: it must install the package itself.
    source = ROOT / f"{page}.py"
    assert source.is_file(), f"chapter {page} must be a py:percent file {page}.py"
    text = source.read_text(encoding="utf8")
    assert "import cake_mini" in text and re.search(r"%pip install|pip install", text), (
        f"{page}.py needs a setup cell: try: import cake_mini / except ImportError: %pip install ..."
    )


def test_every_chapter_is_in_the_toc():
    chapters = {f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.py")}
    missing = sorted(chapters - set(PAGES))
    assert not missing, f"chapters not listed in _toc.yml (they would not be built): {missing}"


def test_config_points_colab_at_generated_notebooks():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    assert config["only_build_toc_files"] is True
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["branch"] == "notebooks"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    reader, options = config["sphinx"]["config"]["nb_custom_formats"][".py"]
    assert reader == "jupytext.reads" and options == {"fmt": "py:percent"}
    assert "notebooks/*.ipynb" in config["exclude_patterns"]
    assert browser_check.expected_colab_url("notebooks/01_x", ROOT).endswith(
        "/blob/notebooks/notebooks/01_x.ipynb"
    )


def _jupytext() -> str | None:
    beside = Path(sys.executable).with_name("jupytext")
    return str(beside) if beside.is_file() else shutil.which("jupytext")


def test_convert_notebooks_writes_colab_copies(tmp_path):
    jupytext = _jupytext()
    if jupytext is None:
        pytest.skip("jupytext is not installed (pip install -e '.[book]')")
    sources = sorted((ROOT / "notebooks").glob("*.py"))
    if not sources:
        pytest.skip("no chapters in notebooks/ yet")
    env = {**os.environ, "JUPYTEXT": jupytext}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "convert_notebooks.sh"), str(tmp_path)],
        check=True, env=env, capture_output=True, text=True,
    )
    for source in sources:
        notebook = json.loads((tmp_path / "notebooks" / f"{source.stem}.ipynb").read_text())
        assert notebook["metadata"]["accelerator"] == "GPU"
        assert notebook["metadata"]["kernelspec"]["name"] == "python3"
        assert any(cell["cell_type"] == "code" for cell in notebook["cells"])


# ------------------------------------------------------------------ the built book, in a browser


@pytest.fixture(scope="module")
def book_browser():
    if not (HTML / "index.html").is_file():
        pytest.skip(f"no built book in {HTML}: run `bash scripts/build_book.sh` first")
    pytest.importorskip(
        "playwright.sync_api",
        reason="pip install playwright (it drives the system Chromium; no `playwright install`)",
    )
    if browser_check.find_chromium() is None:
        pytest.skip("no Chromium/Chrome binary: apt-get install chromium, or set CAKE_MINI_CHROMIUM")
    with browser_check.serve(HTML) as base_url, browser_check.browser(base_url) as context:
        yield base_url, context


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_built_page_in_browser(book_browser, page):
    base_url, context = book_browser
    problems = browser_check.check_page(context, base_url, page, root=ROOT, html_dir=HTML)
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)
