"""Write the book's Results page, book/results.md: every measured number beside the paper's.

    python scripts/results_page.py                    # -> book/results.md (scripts/build_book.sh runs this)
    python scripts/results_page.py --out /tmp/r.md    # elsewhere

Reads benchmarks/results/index.json (which results file each chapter reads, which measured
rows answer which row of the paper's table, the runs that are missing and why),
benchmarks/results/paper_table.json (the paper's numbers) and every results file the index names.
No number is typed in here: each one on the page is a value of one of those files, or the
mean and sample standard deviation of its per-seed values. A file the index names that
benchmarks/results/ lacks is listed as missing, as are the seeds a file should hold and does
not. The page has no build date, so it only changes when the files do.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Iterable

from cake_mini import results as results_files
from cake_mini.results import STUDENT, TEACHER, find, fmt, md_table, metrics_of, size_text, summary

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAPER = RESULTS / "paper_table.json"


# ----------------------------------------------------------------------------- results files


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


def file_section(name: str, data: dict, info: dict | None = None, level: str = "###") -> str:
    """One results file: where it comes from, and its numbers, one table per group."""
    return results_files.file_section(name, data, info, level, date=date_text(name, data))


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
             "from `benchmarks/results/paper_table.json` (the poster's table). Mean ± sample standard deviation over "
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
