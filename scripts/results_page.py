"""Write the book's Results page, book/results.md: every measured number beside the paper's.

    python scripts/results_page.py                    # -> book/results.md (scripts/build_book.sh runs this)
    python scripts/results_page.py --out /tmp/r.md    # elsewhere

Reads benchmarks/results/index.json (which results file each chapter reads, which measured
rows answer which row of the paper's table, the runs that are missing and why),
benchmarks/paper_table.json (the paper's numbers) and every results file the index names.
No number is typed in here: each one on the page is a value of one of those files, or the
mean and sample standard deviation of its per-seed values. A file the index names that
benchmarks/results/ lacks is listed as missing, as are the seeds a file should hold and does
not. The page has no build date, so it only changes when the files do.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAPER = ROOT / "benchmarks" / "paper_table.json"
STUDENT, TEACHER = "student test accuracy (%)", "teacher test accuracy (%)"


# ----------------------------------------------------------------------------- numbers


def summary(values: dict[str, float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (None for one value) and count of per-seed values."""
    numbers = list(values.values())
    return statistics.mean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None, len(numbers)


def fmt(value: float, unit: str = "") -> str:
    """Percent and points with one decimal; other numbers with three significant digits."""
    if unit in ("%", "points"):
        return f"{value:.1f}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def md_table(header: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> list[str]:
    """A markdown table; the columns in ``numeric`` right-aligned."""
    numeric = set(numeric)
    rule = ["---:" if i in numeric else "---" for i in range(len(header))]
    return [f"| {' | '.join(row)} |" for row in (header, rule, *rows)]


# ----------------------------------------------------------------------------- results files


def metrics_of(data: dict) -> list[dict]:
    """The per-seed numbers of a results file as ``{group, name, unit, values: {seed: number}}``.

    Chapter files (``benchmarks/chapter_experiments.py``) store them as ``metrics``; the other
    benchmarks' layouts are read here: rows with per-seed runs (FashionMNIST, black box,
    baselines), the budget curve, throughput and torchrun scaling.
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
    if isinstance(rows, list):  # torchrun scaling
        for row in rows:
            metrics.append({"group": "synthesis seconds", "name": f"{row['processes']} process(es)", "unit": "",
                            "values": {"-": row["synthesis_seconds"]}})
            metrics.append({"group": "synthesis speed-up over 1 process", "name": f"{row['processes']} process(es)",
                            "unit": "", "values": {"-": row["synthesis_speedup"]}})
    return metrics


def find(metrics: list[dict], name: str, group: str = STUDENT) -> dict | None:
    return next((m for m in metrics if m["group"] == group and m["name"] == name and m["values"]), None)


def seeds_of(data: dict) -> list[str]:
    """The seeds the file names, else those its numbers are keyed by."""
    seeds = [str(r["seed"]) for r in data.get("runs", []) if isinstance(r, dict) and "seed" in r]
    seeds = seeds or sorted({seed for m in metrics_of(data) for seed in m["values"] if seed != "-"})
    return seeds or ["(single measurement)"]


def hardware_text(data: dict, info: dict) -> str:
    hw = data.get("hardware") or {}
    if hw.get("gpu"):
        what = hw["gpu"]
    else:
        threads = hw.get("cpu_threads", hw.get("torch_threads"))
        what = f"CPU ({hw.get('cpu', '?')}), {threads} thread{'s' if threads != 1 else ''} per process"
    machine = data.get("machine") or info.get("machine")
    return f"{what}; {machine}" if machine else what


def date_text(name: str, data: dict) -> str:
    """The file's own date, else the date of its last commit, else that it is not recorded."""
    if data.get("date"):
        return str(data["date"])
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", f"benchmarks/results/{name}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"{out} (the commit that holds the file; the file records no date)" if out else "not recorded"


def size_text(data: dict) -> str:
    size = data.get("size") or ("quick" if data.get("quick") else "not named in the file")
    settings = data.get("settings") or {}
    if "num_samples" in settings and "steps" in settings:
        size += f" ({settings['num_samples']:,} samples x {settings['steps']} steps)"
    return size


def file_section(name: str, data: dict, info: dict | None = None, level: str = "###") -> str:
    """One results file: where it comes from, and its numbers, one table per group."""
    info = info or {}
    lines = [f"{level} `{name}`", ""]
    if data.get("title"):
        lines += [f"{data['title']}.", ""]
    lines += [f"- size: {size_text(data)}" + (f"; {data['size_note']}" if data.get("size_note") else ""),
              f"- seeds: {', '.join(seeds_of(data))}" + (f" ({data['seed_varies']})" if data.get("seed_varies") else ""),
              f"- hardware: {hardware_text(data, info)}",
              f"- date: {date_text(name, data)}"]
    if data.get("wall_seconds"):
        lines.append(f"- wall time: {data['wall_seconds'] / 60:.0f} min for all seeds")
    for command in data.get("commands", []):
        lines.append(f"- command: `{command}`")
    for entry in data.get("not_run", []):
        lines.append(f"- not run: {entry['what']}: {entry['why']}")
    groups: dict[str, list[dict]] = {}
    for metric in metrics_of(data):
        groups.setdefault(metric["group"], []).append(metric)
    for group, metrics in groups.items():
        lines += ["", f"**{group}**", ""]
        rows = []
        for m in metrics:
            none = m.get("no_value")
            if not m["values"]:
                rows.append([m["name"], "–", "", "0", f"{none['why']}: {', '.join(none['seeds'])}" if none else ""])
                continue
            mean, std, n = summary(m["values"])
            per_seed = ", ".join(f"{seed}: {fmt(v, m['unit'])}" for seed, v in m["values"].items()) if n > 1 else ""
            if none:
                per_seed += f"; {none['why']}: {', '.join(none['seeds'])}"
            rows.append([m["name"], fmt(mean, m["unit"]), "" if std is None else f"± {fmt(std, m['unit'])}", str(n),
                         per_seed])
        lines += md_table(["", "mean", "std", "seeds", "per seed"], rows, numeric=(1, 2, 3))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the page


def load(names: Iterable[str], results: Path) -> dict[str, dict | None]:
    """Each named file's contents, or None where it is missing or unreadable."""
    loaded = {}
    for name in names:
        try:
            loaded[name] = json.loads((results / name).read_text(encoding="utf8"))
        except (OSError, ValueError):
            loaded[name] = None
    return loaded


def paper_section(index: dict, paper: dict, loaded: dict[str, dict | None]) -> list[str]:
    rows_by_id = {row["id"]: row for row in paper["rows"]}
    rows = []
    for entry in index.get("paper", []):
        p = rows_by_id[entry["paper"]]
        paper_student = fmt(p["student_acc"], "%") + (f" ± {p['student_std']}" if "student_std" in p else "")
        base = [p["data"], f"{p['teacher']} -> {p['student']}", p["method"], fmt(p["teacher_acc"], "%"), paper_student]
        measured = [m for m in entry.get("measured", []) if loaded.get(m["file"]) and find(
            metrics_of(loaded[m["file"]]), m["name"])]
        if not measured:
            why = entry.get("missing") or "not yet run: " + ", ".join(m["file"] for m in entry.get("measured", []))
            rows.append(base + ["–", "–", "", f"not measured ({why})"])
        for m in measured:
            data = loaded[m["file"]]
            metrics = metrics_of(data)
            mean, std, n = summary(find(metrics, m["name"])["values"])
            teacher = find(metrics, m.get("teacher", ""), TEACHER)
            rows.append(base + [fmt(summary(teacher["values"])[0], "%") if teacher else "–",
                                fmt(mean, "%") + ("" if std is None else f" ± {fmt(std, '%')}"), str(n),
                                f"size {size_text(data)}, `{m['file']}`"])
    header = ["data", "teacher -> student", "method", "paper: teacher", "paper: student", "ours: teacher",
              "ours: student", "seeds", "ours: run"]
    return md_table(header, rows, numeric=(3, 4, 5, 6, 7))


def missing_section(index: dict, loaded: dict[str, dict | None]) -> list[str]:
    lines = [f"- **{m['what']}**: {m['why']}" for m in index.get("missing", [])]
    for name, data in loaded.items():
        if data is None:
            readers = [c for c, entry in index["chapters"].items() if name in entry["reads"]]
            lines.append(f"- **`{name}`**: missing from benchmarks/results/ (read by {', '.join(readers) or 'no chapter'})")
            continue
        expect = index.get("files", {}).get(name, {})
        for row in expect.get("expect_rows", []):
            found = find(metrics_of(data), row)
            have = set(found["values"]) if found else set()
            todo = [str(s) for s in expect.get("expect_seeds", []) if str(s) not in have]
            if todo:
                lines.append(f"- **`{name}`, row `{row}`**: seeds {', '.join(todo)} not yet run")
        for entry in data.get("not_run", []):
            hours = entry.get("estimate_hours_per_seed", {})
            cost = ", ".join(f"{k} {v:.1f} h" for k, v in hours.items())
            lines.append(f"- **{entry['what']}** (`{name}`): {entry['why']}" + (f"; estimated per seed on this CPU: "
                                                                                 f"{cost}" if cost else ""))
    return lines


def render(results: Path = RESULTS, paper_path: Path = PAPER) -> str:
    index = json.loads((results / "index.json").read_text(encoding="utf8"))
    paper = json.loads(paper_path.read_text(encoding="utf8"))
    names = list(dict.fromkeys([n for entry in index["chapters"].values() for n in entry["reads"]]
                               + list(index.get("other", {}))))
    loaded = load(names, results)
    lines = ["# Results: measured numbers beside the paper's", "",
             "The chapters of this book are executed at `smoke` size when it is built; their numbers only show "
             "that the code runs. The numbers on this page come from larger runs: benchmark scripts wrote them "
             "into `benchmarks/results/`, and `scripts/results_page.py` set them here when the book was built, "
             "each with the size it was run at, its seeds, its hardware and its date. The paper's numbers come "
             "from `benchmarks/paper_table.json` (the poster's table). Mean ± sample standard deviation over "
             "seeds; accuracies in percent.", "",
             "## The paper's table, and what was measured here", "",
             *paper_section(index, paper, loaded), "",
             "Our runs are smaller than the paper's unless their size says `paper`: a student's accuracy "
             "rises with the synthesis budget, so only a paper-size run is comparable with the paper's number.",
             "", "## Runs that are missing", "", *missing_section(index, loaded), "",
             "## Results by chapter", ""]
    shown: dict[str, str] = {}
    for chapter, entry in index["chapters"].items():
        lines += [f"### {chapter}", ""]
        if entry.get("note"):
            lines += [entry["note"][0].upper() + entry["note"][1:] + ".", ""]
        if not entry["reads"]:
            lines += ["No results file.", ""]
        for name in entry["reads"]:
            data = loaded[name]
            if data is None:
                lines += [f"`{name}`: missing (see above).", ""]
            elif name in shown:
                lines += [f"`{name}`: shown under {shown[name]} above.", ""]
            else:
                shown[name] = chapter
                lines += [file_section(name, data, index.get("files", {}).get(name, {}), "####"), ""]
    lines += ["## Other results files", ""]
    for name, what in index.get("other", {}).items():
        lines += [f"{what}.", ""]
        data = loaded[name]
        lines += [f"`{name}`: missing.", ""] if data is None else [
            file_section(name, data, index.get("files", {}).get(name, {}), "###"), ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder with index.json and the files")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "results.md")
    args = parser.parse_args()
    page = render(args.results)
    changed = not args.out.exists() or args.out.read_text(encoding="utf8") != page
    if changed:
        args.out.write_text(page, encoding="utf8")
    print(f"{args.out}: {'written' if changed else 'up to date'}")


if __name__ == "__main__":
    main()
