"""The Results page (scripts/results_page.py): every indexed file on it, its numbers those of the files."""
from __future__ import annotations

import importlib.util
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

_spec = importlib.util.spec_from_file_location("results_page", ROOT / "scripts" / "results_page.py")
results_page = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = results_page
_spec.loader.exec_module(results_page)


def indexed(index: dict) -> list[str]:
    return sorted({name for entry in index["chapters"].values() for name in entry["reads"]} | set(index.get("other", {})))


def file_tables(page: str, name: str) -> dict[str, dict[str, list[str]]]:
    """The tables of one file's section: {group: {row name: [cells after the name]}}."""
    start = re.search(rf"^#{{3,4}} `{re.escape(name)}`$", page, re.M).start()
    end = page.find("\n#", start + 1)
    groups: dict[str, dict[str, list[str]]] = {}
    group = None
    for line in page[start:end if end > 0 else None].splitlines():
        if line.startswith("**") and line.endswith("**"):
            group = groups.setdefault(line.strip("*"), {})
        elif group is not None and line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            group[cells[0]] = cells[1:]
    return groups


def close(printed: str, value: float, percent: bool) -> bool:
    """``printed`` is ``value`` as the page rounds it: 1 decimal for percent, else 3 significant digits."""
    number = float(printed.replace(",", "").replace("± ", ""))
    return abs(number - value) <= (0.051 if percent else 0.006 * abs(value) + 1e-12)


@pytest.fixture(scope="module")
def real():
    index = json.loads((RESULTS / "index.json").read_text())
    return index, results_page.render()


def test_every_indexed_file_is_on_the_page(real):
    index, page = real
    for name in indexed(index):
        assert f"`{name}`" in page, f"{name} is in benchmarks/results/index.json but not on the Results page"
        if not (RESULTS / name).exists():
            assert f"- **`{name}`**: missing from benchmarks/results/" in page


def test_student_accuracies_equal_the_files(real):
    """Rows with per-seed runs (FashionMNIST, black box, baselines), recomputed from the raw files."""
    index, page = real
    checked = 0
    for name in indexed(index):
        path = RESULTS / name
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data.get("rows"), dict):
            continue
        table = file_tables(page, name)["student test accuracy (%)"]
        for row, entry in data["rows"].items():
            accs = [100 * r["student_accuracy"] for r in entry["runs"]]
            mean, std, seeds, per_seed = table[row]
            assert close(mean, statistics.mean(accs), True), (name, row, mean)
            assert int(seeds) == len(accs)
            if len(accs) > 1:
                assert close(std, statistics.stdev(accs), True), (name, row, std)
            printed = dict(v.split(": ") for v in per_seed.split(", "))  # a single seed too: which one
            assert list(printed) == [str(r["seed"]) for r in entry["runs"]], (name, row, per_seed)
            assert all(abs(float(p) - a) <= 0.051 for p, a in zip(printed.values(), accs))
            checked += 1
    assert checked >= 10, "the FashionMNIST and black-box files alone have more rows"


def test_chapter_metrics_equal_the_files(real):
    """Every number of every chapter file (benchmarks/chapter_experiments.py) that is present."""
    index, page = real
    checked = 0
    for name in indexed(index):
        path = RESULTS / name
        if not re.match(r"chapter\d\d-", name) or not path.exists():
            continue
        checked += 1
        data = json.loads(path.read_text())
        tables = file_tables(page, name)
        for metric in data["metrics"]:
            if not metric["values"]:
                continue
            cells = tables[metric["group"]][metric["name"]]
            values = list(metric["values"].values())
            percent = metric["unit"] in ("%", "points")
            assert close(cells[0], statistics.mean(values), percent), (name, metric["name"], cells)
            if len(values) > 1:
                assert close(cells[1], statistics.stdev(values), percent), (name, metric["name"], cells)
    assert checked >= 5, "chapters 2, 3, 4, 6 and 8 have committed experiment files"


def test_paper_column_is_the_paper_table(real):
    _, page = real
    paper = json.loads((RESULTS / "paper_table.json").read_text())
    for row in paper["rows"]:
        line = next((l for l in page.splitlines() if l.startswith(f"| {row['data']} | {row['teacher']} -> "
                                                                    f"{row['student']} | {row['method']} |")), None)
        assert line is not None, f"the paper's row {row['id']} is not on the page"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[3]) == row["teacher_acc"] and float(cells[4].split(" ± ")[0]) == row["student_acc"]


def _chapter_file(seeds: dict[str, float]) -> dict:
    return {"size": "default", "settings": {"num_samples": 100, "steps": 5}, "hardware": {"cpu": "x", "cpu_threads": 1},
            "date": "2026-11-29", "metrics": [{"group": "student test accuracy (%)", "name": "cake", "unit": "%",
                                               "values": seeds}]}


def test_missing_files_and_seeds_are_listed_as_missing(tmp_path):
    index = {"chapters": {"notebooks/02_x.py": {"reads": ["chapter02-x.json", "chapter02-gone.json"]}},
             "files": {"chapter02-x.json": {"expect_seeds": [0, 1, 2], "expect_rows": ["cake"]}},
             "paper": [{"paper": "fmnist-cake", "measured": [{"file": "chapter02-x.json", "name": "cake"}]}],
             "missing": [{"what": "CIFAR-10", "why": "no data here"}]}
    (tmp_path / "index.json").write_text(json.dumps(index))
    (tmp_path / "chapter02-x.json").write_text(json.dumps(_chapter_file({"0": 41.25, "1": 37.5})))
    page = results_page.render(tmp_path)
    missing = page[page.index("## Runs that are missing"):page.index("## Results by chapter")]
    assert "**`chapter02-gone.json`**: missing from benchmarks/results/ (read by notebooks/02_x.py)" in missing
    assert "**`chapter02-x.json`, row `cake`**: seeds 2 not yet run" in missing
    assert "**CIFAR-10**: no data here" in missing
    assert "chapter02-x.json" in page[:page.index("## Runs that are missing")]  # in the paper's table
    mean, std, seeds, per_seed = file_tables(page, "chapter02-x.json")["student test accuracy (%)"]["cake"]
    assert (mean, std, seeds, per_seed) == ("39.4", "± 2.7", "2", "0: 41.2, 1: 37.5")


def test_the_generator_writes_the_page_it_renders(tmp_path):
    out = tmp_path / "results.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "results_page.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert out.read_text() == results_page.render()
    assert re.search(r"^# Results", out.read_text(), re.M)


def test_a_file_whose_seeds_ran_on_two_machines_says_which_ran_where():
    from cake_mini.results import file_section

    zen3 = {"cpu": "x86_64", "cpu_model": "AMD EPYC, family 25 model 1", "cpu_threads": 1, "allocator": "jemalloc"}
    runs = [{"seed": 1, "student_accuracy": 0.82}, {"seed": 2, "student_accuracy": 0.80, "hardware": zen3}]
    data = {"hardware": {"cpu": "x86_64", "cpu_threads": 1}, "rows": {"low-eta": {"runs": runs}}}
    section = file_section("x.json", data, {"machine": "a 2-core CPU"})
    assert ("- hardware by seed: CPU (x86_64), 1 thread per process: seed 1; CPU (AMD EPYC, family 25 model 1), "
            "1 thread per process, jemalloc: seed 2; a 2-core CPU") in section.splitlines()
    one_machine = {**data, "rows": {"low-eta": {"runs": runs[:1]}}}
    assert "- hardware: CPU (x86_64), 1 thread per process; a 2-core CPU" in \
        file_section("x.json", one_machine, {"machine": "a 2-core CPU"}).splitlines()
