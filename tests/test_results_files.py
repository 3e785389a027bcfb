"""cake_mini.results: how chapters read and show the benchmark files, here and on Colab."""
from __future__ import annotations

import io
import json

import pytest

from cake_mini import book, results

FILE = {"title": "Digits", "size": "default", "date": "2026-11-29", "runs": [{"seed": 0}, {"seed": 1}],
        "metrics": [{"group": "student (%)", "name": "CAKE", "unit": "%", "values": {"0": 90.0, "1": 94.0}},
                    {"group": "w_TV sweep", "name": "w_tv = 0", "unit": "", "values": {"0": 0.5, "1": 0.25}}]}


def test_show_keeps_the_chosen_tables_and_gives_the_numbers(tmp_path):
    (tmp_path / "chapter04.json").write_text(json.dumps(FILE))
    shown = results.show("chapter04.json", groups=["student (%)"], directory=tmp_path)
    text = shown._repr_markdown_()
    assert "- size: default" in text and "- seeds: 0, 1" in text and "- date: 2026-11-29" in text
    assert "| CAKE | 92.0 | ± 2.8 | 2 | 0: 90.0, 1: 94.0 |" in text
    assert "w_TV sweep" not in text and "w_TV sweep" in str(results.show("chapter04.json", directory=tmp_path))
    assert shown.mean("CAKE", "student (%)") == (92.0, pytest.approx(2.828, abs=1e-3), 2)
    with pytest.raises(KeyError, match="its groups are"):
        results.show("chapter04.json", groups=["teacher"], directory=tmp_path)
    with pytest.raises(KeyError, match="rows there: \\['CAKE'\\]"):
        shown.values("noise", "student (%)")
    assert book.show_results is results.show and book.load_results is results.load_results


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_outside_the_repository_a_file_is_downloaded_from_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # like Colab: no pyproject.toml, no benchmarks/results/
    monkeypatch.delenv("CAKE_MINI_RESULTS", raising=False)
    monkeypatch.setattr(results, "repository_url", lambda: "https://github.com/someone/cake_mini")
    asked = []

    def urlopen(url, timeout):
        asked.append(url)
        return _Response(json.dumps(FILE).encode())

    monkeypatch.setattr(results.urllib.request, "urlopen", urlopen)
    (name, data), = results.load_results("chapter04.json")
    assert asked == ["https://raw.githubusercontent.com/someone/cake_mini/main/benchmarks/results/chapter04.json"]
    assert (name, data) == ("chapter04.json", FILE)
    assert json.loads((tmp_path / "benchmarks" / "results" / "chapter04.json").read_text()) == FILE
    results.load_results("chapter04.json")
    assert len(asked) == 1, "a downloaded file is read from disk the next time"

    def offline(url, timeout):
        raise OSError("no network")

    monkeypatch.setattr(results.urllib.request, "urlopen", offline)
    with pytest.raises(results.ResultsNotFoundError, match="CAKE_MINI_RESULTS"):
        results.load_results("chapter09.json")
    with pytest.raises(results.ResultsNotFoundError):
        results.load_results("chapter*.json.nothing")


def test_the_repository_url_is_the_one_in_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert results.repository_url() == pyproject["project"]["urls"]["Repository"]


def test_show_or_say_why_says_why_and_goes_on(tmp_path, capsys):
    (tmp_path / "chapter04.json").write_text(json.dumps(FILE))
    assert results.show_or_say_why("chapter04.json", directory=tmp_path).name == "chapter04.json"
    assert results.show_or_say_why("chapter09.json", directory=tmp_path) is None
    assert "no results file chapter09.json" in capsys.readouterr().out
    with pytest.raises(KeyError):  # a wrong group is the chapter's mistake, not a missing file
        results.show_or_say_why("chapter04.json", groups=["teacher"], directory=tmp_path)


def test_show_or_say_why_names_the_command_that_makes_a_missing_file(tmp_path, capsys):
    assert results.show_or_say_why("chapter09.json", directory=tmp_path,
                                   how="python benchmarks/black_box.py --size cpu") is None
    out = capsys.readouterr().out
    assert "no results file chapter09.json" in out
    assert "Make it from the repository root with\n    python benchmarks/black_box.py --size cpu" in out
