"""Benchmark results files: find them, read their per-seed numbers, show them as tables.

The scripts in ``benchmarks/`` write JSON files into ``benchmarks/results/``; the book is
executed at ``smoke`` size, so what a chapter teaches from larger runs it reads from there:

    from cake_mini import results
    table = results.show("chapter04-digits-default-cpu-1threads.json")
    table                          # in a notebook: size, seeds, hardware, then one table per group
    table.mean("CAKE (data-free)")  # (mean, sample std or None, number of seeds)

Every number shown is a value of the file, or the mean and sample standard deviation of
its per-seed values. The book's Results page (``scripts/results_page.py``) is built from
the same functions. Outside the repository (Colab) a file is downloaded from the
repository named in the package's metadata.
"""
from __future__ import annotations

import fnmatch
import json
import os
import statistics
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

STUDENT, TEACHER = "student test accuracy (%)", "teacher test accuracy (%)"

# ----------------------------------------------------------------------------- numbers


def summary(values: dict[str, float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (None for one value) and count of per-seed values.

    >>> summary({"0": 1.0, "1": 3.0})
    (2.0, 1.4142135623730951, 2)
    """
    numbers = list(values.values())
    return statistics.mean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None, len(numbers)


def fmt(value: float, unit: str = "") -> str:
    """Percent and points with one decimal; other numbers with three significant digits.

    >>> fmt(78.471, "%"), fmt(0.000123), fmt(2.5e6), fmt(12345.6), fmt(0.5661)
    ('78.5', '1.23e-04', '2.50e+06', '12,346', '0.566')
    """
    if unit in ("%", "points"):
        return f"{value:.1f}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def md_table(header: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> list[str]:
    """The lines of a markdown table; the columns in ``numeric`` right-aligned.

    >>> md_table(["row", "acc"], [["cake", "78.5"]], numeric=[1])
    ['| row | acc |', '| --- | ---: |', '| cake | 78.5 |']
    """
    numeric = set(numeric)
    rule = ["---:" if i in numeric else "---" for i in range(len(header))]
    return [f"| {' | '.join(row)} |" for row in (header, rule, *rows)]


# ----------------------------------------------------------------------------- one file's numbers


def metrics_of(data: dict) -> list[dict]:
    """The per-seed numbers of a results file as ``{group, name, unit, values: {seed: number}}``.

    Chapter files (``benchmarks/chapter_experiments.py``) store them as ``metrics``; the other
    benchmarks' layouts are read here: rows with per-seed runs (FashionMNIST, black box,
    baselines), the budget curve, throughput, torchrun scaling and the allocator comparison.
    """
    if "metrics" in data:
        return data["metrics"]
    metrics = []
    teachers = data.get("teachers") or ({"teacher": data["teacher"]} if isinstance(data.get("teacher"), dict) else {})
    for name, info in teachers.items():
        if isinstance(info, dict) and info.get("test_accuracy") is not None:
            metrics.append({"group": TEACHER, "name": name, "unit": "%", "values": {"-": 100 * info["test_accuracy"]}})
    rows = data.get("rows")
    if isinstance(rows, dict):
        for name, entry in rows.items():
            runs = [r for r in entry.get("runs", []) if r.get("student_accuracy") is not None]
            if runs:
                metrics.append({"group": STUDENT, "name": name, "unit": "%",
                                "values": {str(r["seed"]): 100 * r["student_accuracy"] for r in runs}})
    for point in data.get("budget_curve", []):
        name = f"{point['samples']:,} samples x {point['steps']} steps"
        found = next((m for m in metrics if m["group"] == "budget curve: " + STUDENT and m["name"] == name), None)
        if found is None:
            found = {"group": "budget curve: " + STUDENT, "name": name, "unit": "%", "values": {}}
            metrics.append(found)
        found["values"][str(point["seed"])] = 100 * point["student_accuracy"]
    if data.get("benchmark") == "throughput" or "projection" in data:
        for teacher, entry in data.get("synthesis", {}).items():
            metrics.append({"group": "synthesis, best sample-steps/s", "name": teacher, "unit": "",
                            "values": {"-": entry["best"]}})
            metrics.append({"group": "synthesis, share of the machine's peak FLOP/s", "name": teacher, "unit": "%",
                            "values": {"-": 100 * entry["fraction_of_peak"]}})
        for name, entry in data.get("projection", {}).items():
            metrics.append({"group": "projected hours for the paper's synthesis at the best measured rate",
                            "name": f"{name} ({entry['samples']:,} samples x {entry['steps']} steps)", "unit": "",
                            "values": {"-": entry["fast_seconds"] / 3600}})
    if data.get("benchmark") == "chapter-timings":
        for chapter, entry in sorted(data.get("chapters", {}).items()):
            for where, label in (("cpu", "this project's CPU"), ("t4", "Colab T4")):
                for size, cell in (entry.get(where) or {}).items():
                    if cell.get("seconds") is not None:
                        metrics.append({"group": f"minutes at size {size}, {label} ({cell.get('kind', 'estimate')})",
                                        "name": f"chapter {chapter}", "unit": "",
                                        "values": {"-": cell["seconds"] / 60}})
    if data.get("benchmark") == "allocator":
        for allocator, phases in data.get("runs", {}).items():
            metrics.append({"group": "synthesis sample-steps/s, by allocator", "name": allocator, "unit": "",
                            "values": {"-": phases["synthesis"]["sample_steps_per_s"]}})
            metrics.append({"group": "student ms per step, by allocator", "name": allocator, "unit": "",
                            "values": {"-": phases["student"]["ms_per_step"]}})
    if isinstance(rows, list):  # torchrun scaling
        for row in rows:
            metrics.append({"group": "synthesis seconds", "name": f"{row['processes']} process(es)", "unit": "",
                            "values": {"-": row["synthesis_seconds"]}})
            metrics.append({"group": "synthesis speed-up over 1 process", "name": f"{row['processes']} process(es)",
                            "unit": "", "values": {"-": row["synthesis_speedup"]}})
    return metrics


def find(metrics: list[dict], name: str, group: str = STUDENT) -> dict | None:
    """The metric called ``name`` in ``group`` that has values, else None."""
    return next((m for m in metrics if m["group"] == group and m["name"] == name and m["values"]), None)


def seeds_of(data: dict) -> list[str]:
    """The seeds the file names, else those its numbers are keyed by."""
    seeds = [str(r["seed"]) for r in data.get("runs", []) if isinstance(r, dict) and "seed" in r]
    seeds = seeds or sorted({seed for m in metrics_of(data) for seed in m["values"] if seed != "-"})
    return seeds or ["(single measurement)"]


def hardware_text(data: dict, info: dict | None = None) -> str:
    """The GPU, or the CPU and threads per process, and the machine's description."""
    hw = data.get("hardware") or {}
    if hw.get("gpu"):
        what = hw["gpu"]
    else:
        threads = hw.get("cpu_threads", hw.get("torch_threads"))
        cpu = hw.get("cpu_model", hw.get("cpu", "?")) + (", AVX-512" if hw.get("avx512") else "")
        what = f"CPU ({cpu}), {threads} thread{'s' if threads != 1 else ''} per process"
        if hw.get("allocator") not in (None, "default"):
            what += f", {hw['allocator']}"
    machine = data.get("machine") or (info or {}).get("machine")
    return f"{what}; {machine}" if machine else what


def hardware_line(data: dict, info: dict | None = None) -> str:
    """A file's hardware as a markdown list item: by seed where its runs ran on several machines."""
    by_seed = machines_by_seed(data)
    if by_seed is None:
        return f"- hardware: {hardware_text(data, info)}"
    machine = data.get("machine") or (info or {}).get("machine")
    return f"- hardware by seed: {by_seed}" + (f"; {machine}" if machine else "")


def machines_by_seed(data: dict) -> str | None:
    """Which seeds ran on which machine, where a file's runs record more than one; else ``None``.

    Runs that record no ``hardware`` of their own ran on the file's.

    >>> runs = [{"seed": 0}, {"seed": 1, "hardware": {"cpu": "x86_64", "cpu_threads": 2}}]
    >>> machines_by_seed({"hardware": {"gpu": "H100"}, "rows": {"cake": {"runs": runs}}})
    'H100: seed 0; CPU (x86_64), 2 threads per process: seed 1'
    """
    rows = data.get("rows") or {}
    entries = rows.values() if isinstance(rows, dict) else rows
    runs = [run for entry in entries if isinstance(entry, dict) for run in entry.get("runs", [])
            if isinstance(run, dict)] + list(data.get("budget_curve", []))
    seeds: dict[str, set] = {}
    for run in runs:
        text = hardware_text({"hardware": run.get("hardware", data.get("hardware"))})
        seeds.setdefault(text, set()).add(run.get("seed"))
    if len(seeds) < 2:
        return None
    return "; ".join(f"{text}: seed{'s' if len(s) > 1 else ''} {', '.join(map(str, sorted(s, key=str)))}"
                     for text, s in sorted(seeds.items(), key=lambda item: min(map(str, item[1]))))


def size_text(data: dict) -> str:
    """The size the file was run at, with its synthesis budget when it names one."""
    size = data.get("size") or ("quick" if data.get("quick") else "not named in the file")
    settings = data.get("settings") or {}
    if "num_samples" in settings and "steps" in settings:
        size += f" ({settings['num_samples']:,} samples x {settings['steps']} steps)"
    return size


def file_section(name: str, data: dict, info: dict | None = None, level: str = "###",
                 groups: Iterable[str] | None = None, date: str | None = None) -> str:
    """One results file as markdown: where it comes from, and its numbers, one table per group.

    ``level`` is the heading of the file's name ("" for none, as in a chapter's output);
    ``groups`` keeps only those groups of numbers (all by default); ``date`` replaces the
    file's own date when it records none.
    """
    info = info or {}
    lines = [f"{level} `{name}`", ""] if level else []
    if data.get("title"):
        lines += [f"{data['title']}.", ""]
    lines += [f"- size: {size_text(data)}" + (f"; {data['size_note']}" if data.get("size_note") else ""),
              f"- seeds: {', '.join(seeds_of(data))}" + (f" ({data['seed_varies']})" if data.get("seed_varies") else ""),
              hardware_line(data, info),
              f"- date: {data.get('date') or date or 'not recorded'}"]
    if data.get("wall_seconds"):
        lines.append(f"- wall time: {data['wall_seconds'] / 60:.0f} min for all seeds")
    for command in data.get("commands", []):
        lines.append(f"- command: `{command}`")
    for entry in data.get("not_run", []):
        lines.append(f"- not run: {entry['what']}: {entry['why']}")
    by_group: dict[str, list[dict]] = {}
    for metric in metrics_of(data):
        by_group.setdefault(metric["group"], []).append(metric)
    wanted = None if groups is None else list(groups)
    unknown = [g for g in wanted or [] if g not in by_group]
    if unknown:
        raise KeyError(f"{name} has no group {unknown}; its groups are {list(by_group)}")
    for group in wanted or by_group:
        lines += ["", f"**{group}**", ""]
        rows = []
        for m in by_group[group]:
            none = m.get("no_value")
            if not m["values"]:
                rows.append([m["name"], "–", "", "0", f"{none['why']}: {', '.join(none['seeds'])}" if none else ""])
                continue
            mean, std, n = summary(m["values"])
            per_seed = ", ".join(f"{seed}: {fmt(v, m['unit'])}" for seed, v in m["values"].items())
            if none:
                per_seed += f"; {none['why']}: {', '.join(none['seeds'])}"
            rows.append([m["name"], fmt(mean, m["unit"]), "" if std is None else f"± {fmt(std, m['unit'])}", str(n),
                         per_seed])
        lines += md_table(["", "mean", "std", "seeds", "per seed"], rows, numeric=(1, 2, 3))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- finding files


class ResultsNotFoundError(FileNotFoundError):
    """No benchmark results file where :func:`load_results` looked."""


def results_dir() -> Path:
    """``$CAKE_MINI_RESULTS``, else ``benchmarks/results/`` of the repository the chapter runs in."""
    if os.environ.get("CAKE_MINI_RESULTS"):
        return Path(os.environ["CAKE_MINI_RESULTS"])
    for candidate in (Path("."), Path("..")):
        if (candidate / "pyproject.toml").exists() and (candidate / "cake_mini").is_dir():
            return candidate / "benchmarks" / "results"
    return Path("benchmarks") / "results"


def repository_url() -> str | None:
    """The ``Repository`` URL of the installed package's metadata (pyproject's ``[project.urls]``)."""
    from importlib import metadata

    try:
        urls = metadata.metadata("cake_mini").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    return None


def download(name: str, directory: Path, branch: str = "main", timeout: float = 20.0) -> Path | None:
    """Fetch ``benchmarks/results/<name>`` of the repository into ``directory``; None if that fails."""
    url = repository_url()
    if not url or "github.com/" not in url or any(c in name for c in "*?["):
        return None
    owner_repo = url.rstrip("/").split("github.com/", 1)[1]
    raw = f"https://raw.githubusercontent.com/{owner_repo}/{branch}/benchmarks/results/{name}"
    try:
        with urllib.request.urlopen(raw, timeout=timeout) as response:
            body = response.read()
        json.loads(body)
    except (OSError, ValueError):
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(body)
    return path


def load_results(pattern: str, directory: str | os.PathLike | None = None) -> list[tuple[str, dict]]:
    """Every results file matching ``pattern`` as ``(file name, contents)``, sorted by name.

    The files are looked for in ``directory``, else :func:`results_dir`. When nothing
    matches, no directory was given and ``pattern`` is one file's name, the file is
    downloaded from the package's repository (Colab, where the notebook comes without it).
    A file that cannot be read is skipped with a message.

    Raises:
        ResultsNotFoundError: no file matches and none could be downloaded: the message
            says where it looked and how to get the files.
    """
    where = Path(directory) if directory is not None else results_dir()
    paths = sorted(where.glob(pattern))
    if not paths and directory is None and not os.environ.get("CAKE_MINI_RESULTS"):
        fetched = download(pattern, where)
        paths = [fetched] if fetched else []
    found = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf8"))
        except (OSError, ValueError) as err:
            print(f"skipping {path.name}: {err}")
            continue
        if isinstance(data, dict) and fnmatch.fnmatch(path.name, pattern):
            found.append((path.name, data))
    if not found:
        raise ResultsNotFoundError(
            f"no results file {pattern} in {where.resolve()}. The benchmark scripts write them "
            "(see benchmarks/README.md), and the repository keeps them in benchmarks/results/. "
            "Outside the repository (e.g. on Colab) they are downloaded from it when the network "
            "allows; else clone the repository, or download the files and set CAKE_MINI_RESULTS "
            "to their folder."
        )
    return found


# ----------------------------------------------------------------------------- in a chapter


@dataclass
class Measured:
    """One results file as a chapter shows it: its markdown, its numbers, and their means."""

    name: str
    data: dict
    groups: list[str] | None = None

    @property
    def metrics(self) -> list[dict]:
        return metrics_of(self.data)

    def values(self, name: str, group: str = STUDENT) -> dict[str, float]:
        """The per-seed values of one row; KeyError naming the rows there are, if it has none."""
        found = find(self.metrics, name, group)
        if found is None:
            there = [m["name"] for m in self.metrics if m["group"] == group]
            raise KeyError(f"{self.name}: no values for {name!r} in {group!r}; rows there: {there}")
        return found["values"]

    def mean(self, name: str, group: str = STUDENT) -> tuple[float, float | None, int]:
        """(mean, sample std or None, number of values) of one row."""
        return summary(self.values(name, group))

    def markdown(self) -> str:
        return file_section(self.name, self.data, level="", groups=self.groups)

    def _repr_markdown_(self) -> str:
        return f"Measured: `{self.name}`\n\n" + self.markdown()

    def __str__(self) -> str:
        return self.markdown()


def show(name: str, groups: Iterable[str] | None = None, directory: str | os.PathLike | None = None) -> Measured:
    """The results file ``name`` (see :func:`load_results`), shown as markdown in a notebook.

    ``groups`` keeps only those tables. Raises :class:`ResultsNotFoundError` if the file is
    nowhere to be found, KeyError for a group the file does not have.
    """
    (found, data), = load_results(name, directory)[:1]
    measured = Measured(found, data, None if groups is None else list(groups))
    measured.markdown()  # an unknown group fails here, not when the notebook renders
    return measured


def show_or_say_why(name: str, groups: Iterable[str] | None = None,
                    directory: str | os.PathLike | None = None, how: str | None = None) -> Measured | None:
    """:func:`show`, or None after printing why the file is nowhere to be found.

    For chapters, which must run on where the results are missing (Colab without network):
    the reader learns why the table is not there (and, given ``how``, the command that makes
    it), and the chapter goes on.
    """
    try:
        return show(name, groups, directory)
    except ResultsNotFoundError as err:
        print(err if how is None else f"{err}\nMake it from the repository root with\n    {how}")
        return None
