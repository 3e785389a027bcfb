"""Release plumbing: one repository URL, the chapters' install cell, the release workflow.

``pyproject.toml`` ``[project.urls] Repository`` is the source of truth for the GitHub URL;
``scripts/install_cell.py`` generates the chapters' first code cell from it and from the
package version.

NOTE: ``test_chapter_starts_with_the_install_cell`` fails until every notebooks/*.py begins
with that cell (``python scripts/install_cell.py --write``, then remove the chapter's old
``try: import cake_mini / except ImportError: %pip install`` lines), and again after every
version bump until the command is rerun. That is its job: a chapter whose Colab copy cannot
install the package must not ship.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import cake_mini

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.py"))

_spec = importlib.util.spec_from_file_location("install_cell", ROOT / "scripts" / "install_cell.py")
install_cell = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_cell)


def _yaml(path: Path):
    yaml = pytest.importorskip("yaml", reason="needs PyYAML (pip install -e '.[book]')")
    return yaml.safe_load(path.read_text(encoding="utf8"))


def _repository() -> tuple[str, str, str]:
    url = install_cell.repository_url(ROOT)
    parts = urlsplit(url)
    owner, name = parts.path.strip("/").split("/")
    return url, owner, name


# ------------------------------------------------------------------------- one repository URL


def test_pyproject_urls():
    url, owner, name = _repository()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), f"Repository must be a GitHub URL, got {url}"
    urls = install_cell.project(ROOT)["urls"]
    pages = f"https://{owner.lower()}.github.io/{name}/"
    assert urls["Documentation"] == pages, (
        f"Documentation should be the book on GitHub Pages of {url}: {pages} (.github/workflows/book.yml deploys it)"
    )


def test_config_repository_url_is_pyprojects():
    url, _, _ = _repository()
    config = _yaml(ROOT / "_config.yml")
    assert config["repository"]["url"].rstrip("/") == url, (
        f"_config.yml repository.url is {config['repository']['url']}; pyproject.toml [project.urls] "
        f"Repository is {url}: they must be the same (pyproject.toml is the source)"
    )


def test_docs_name_no_other_repository():
    """Every mention of this project's GitHub repository or Pages site uses pyproject's."""
    url, owner, name = _repository()
    mention = re.compile(r"https?://(?:github\.com/[\w.-]+/cake[_-]mini|[\w.-]+\.github\.io/cake[_-]mini)\b[\w./-]*",
                         re.I)
    allowed = (url, f"https://{owner.lower()}.github.io/{name}")
    files = [ROOT / "README.md", ROOT / "_config.yml", *sorted((ROOT / "book").glob("*.md")),
             *sorted((ROOT / ".github" / "workflows").glob("*.yml")), *CHAPTERS]
    wrong = [f"{path.relative_to(ROOT)}: {m}" for path in files if path.is_file()
             for m in mention.findall(path.read_text(encoding="utf8"))
             if not m.rstrip("/.").startswith(allowed) and not m.startswith(f"{url}.git")]
    assert not wrong, f"repository URLs that are not pyproject.toml's {url}:\n" + "\n".join(wrong)


def test_version_is_the_same_everywhere():
    version = install_cell.project(ROOT)["version"]
    assert cake_mini.__version__ == version, (
        f"cake_mini.__version__ is {cake_mini.__version__}, pyproject.toml says {version}: bump both"
    )


# ------------------------------------------------------------------------------ install cell


def test_install_cell_is_generated_from_pyproject():
    cell = install_cell.install_cell(ROOT)
    url, _, _ = _repository()
    meta = install_cell.project(ROOT)
    assert cell.splitlines()[0] == '# %% tags=["hide-input"]'
    assert f'"{meta["name"]}=={meta["version"]}"' in cell
    assert f'"{meta["name"]} @ git+{url}"' in cell
    assert cell.index("==") < cell.index("git+"), "PyPI first, GitHub second"
    compile(cell, "install cell", "exec")  # plain Python: no magics, runs before anything else


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_starts_with_the_install_cell(chapter):
    # Expected to fail until the chapters get the cell: see the module docstring.
    want = install_cell.install_cell(ROOT)
    got = install_cell.first_code_cell(chapter.read_text(encoding="utf8"))
    head = "\n".join((got or "(no code cell)").splitlines()[:3])
    assert got == want, (
        f"{chapter.name}: the first code cell must be the install cell that "
        f"`python scripts/install_cell.py` prints (write it with --write). It begins:\n{head}"
    )


def _run_cell(monkeypatch, answers, installed=False):
    """Run the install cell with pip faked: ``answers`` are its return codes, in order."""
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[-1])
        code = answers[len(calls) - 1]
        return subprocess.CompletedProcess(cmd, code, stdout="", stderr=f"pip said no to {cmd[-1]}")

    monkeypatch.setattr(subprocess, "run", fake_run)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: real_find_spec(name, *a) if installed or name != "cake_mini" else None)
    exec(compile(install_cell.install_cell(ROOT), "install cell", "exec"), {})
    return calls


def test_install_cell_does_nothing_when_installed(monkeypatch):
    assert _run_cell(monkeypatch, [], installed=True) == []


def test_install_cell_prefers_pypi(monkeypatch, capsys):
    meta = install_cell.project(ROOT)
    assert _run_cell(monkeypatch, [0]) == [f"{meta['name']}=={meta['version']}"]
    assert "installed cake_mini==" in capsys.readouterr().out


def test_install_cell_falls_back_to_github(monkeypatch, capsys):
    url, _, _ = _repository()
    calls = _run_cell(monkeypatch, [1, 0])
    assert len(calls) == 2 and calls[1] == f"cake_mini @ git+{url}"
    assert "installed cake_mini @ git+" in capsys.readouterr().out


def test_install_cell_says_why_when_both_fail(monkeypatch):
    with pytest.raises(RuntimeError, match="could not install cake_mini:\npip said no to cake_mini @ git+"):
        _run_cell(monkeypatch, [1, 1])


CHAPTER = '''\
# ---
# jupyter:
#   kernelspec:
#     name: python3
# ---

# %% [markdown]
# # A chapter

# %%
import cake_mini
print(cake_mini.__version__)

# %% [markdown]
# The end.
'''


def test_install_cell_script_writes_and_checks(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_x.py").write_text(CHAPTER)
    script = [sys.executable, str(ROOT / "scripts" / "install_cell.py"), "--notebooks", str(notebooks)]
    run = lambda *args: subprocess.run([*script, *args], capture_output=True, text=True)  # noqa: E731

    assert run("--check").returncode == 1
    assert run("--write").returncode == 0
    text = (notebooks / "01_x.py").read_text()
    assert run("--check").returncode == 0
    assert install_cell.first_code_cell(text) == install_cell.install_cell(ROOT)
    # the chapter's own cells are all still there, after the install cell
    assert text.replace(install_cell.install_cell(ROOT) + "\n\n", "") == CHAPTER
    # rerunning changes nothing; an outdated cell of ours (older version) is replaced, not stacked
    assert run("--write").stdout == "" and (notebooks / "01_x.py").read_text() == text
    (notebooks / "01_x.py").write_text(text.replace("==", "==0.0.1.dev0+old"))
    assert run("--check").returncode == 1
    run("--write")
    assert (notebooks / "01_x.py").read_text() == text


# ------------------------------------------------------------------------- release workflow


def test_release_workflow():
    flow = _yaml(ROOT / ".github" / "workflows" / "release.yml")
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers["push"]["tags"] == ["v*"]
    jobs = flow["jobs"]
    steps = lambda job: "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in jobs[job]["steps"])  # noqa: E731
    assert "python -m build" in steps("build")
    assert "rm -rf cake_mini" in steps("test-wheel"), "the tests must import the installed wheel, not the sources"
    publish = jobs["publish"]
    assert set(publish["needs"]) == {"build", "test-wheel"}
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    assert "pypa/gh-action-pypi-publish@release/v1" in steps("publish")
    assert flow["permissions"] == {"contents": "read"}, "only the publish job gets a token"
