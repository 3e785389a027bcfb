"""Beat the paper's FashionMNIST row: candidate recipes beside their controls, on the same samples.

    python benchmarks/fashion_mnist_search.py --seeds 0 1 2            # 26,000 x 256, about the default budget
    python benchmarks/fashion_mnist_search.py --stride 1 --candidates clamp-relabel   # the paper's budget
    python benchmarks/fashion_mnist_search.py --size smoke --stride 2 --seeds 0   # a pipeline check, seconds

A candidate changes what the student is trained on, or how. All but those with ``synthesis``
settings of their own (other samples at the same budget, e.g. smaller step sizes) read the
`cake` samples of the paper-size run of ``benchmarks/fashion_mnist.py`` (the authors' teacher,
checkpointed in ``benchmarks/cache/synthesis``; synthesised if missing, about 80 min a seed
under torchrun on 2 CPU cores) and keep the sub-budget of every ``stride``-th mini-batch
after ``steps`` steps, exactly as the budget curve does. Stride 10 after 256 steps is the
sample set of a 26,000 x 256 run (the `default` size's budget), about a minute a student on
this CPU; stride 1 is the paper's 256,000 x 256.

Each candidate names its control: the same samples and as many student SGD steps, so a
difference between the two is the candidate's. The file keeps every seed of every candidate,
and the markdown beside it the paired differences to the controls.

Memory: a process holds its seed's whole synthesis (256,000 samples x 4 snapshots: 4.2 GB). It
peaked near 12 GB at stride 1 when the all-snapshot candidates still copied it, and two torchrun
processes did not fit a 24-GB machine; without the copy, two ranks of `randaugment-snapshots` at
stride 1 used 16 GB of 23 (measured 2026-12-06): torchrun with 2 processes fits there. A fresh
synthesis also held each rank's finished shards until the end, and a rank was killed at 11.7 GB
right after its last shard; since then they wait on disk (resumed: 5.1 GB a rank while training).

Writes benchmarks/results/fashion-mnist-search-k<stride>-t<steps>-<hardware>.json after every
student; finished (candidate, seed) pairs are skipped on a rerun. Runs of the same command
in several processes (different ``--seeds`` and ``--out``) are joined with ``--merge``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import fashion_mnist as fm
from cake_mini import data, distributed
from cake_mini.checkpoint import atomic_write_bytes
from cake_mini.experiments import EXPERIMENTS, hardware, versions

TEACHER = "authors"


@dataclass(frozen=True)
class Candidate:
    """One way to train the student on the sub-budget's samples, and what it is compared with."""

    name: str
    description: str
    control: str | None  # the candidate with the same samples and as many student SGD steps
    all_snapshots: bool = False  # every kept iterate of the sub-budget's samples, not only the last
    clamp: bool = False  # clamp samples to the data's range [-1, 1] and relabel them with the teacher
    distill: dict[str, Any] = field(default_factory=dict)
    online_teacher: bool = False
    epochs_factor: int = 1
    synthesis: dict[str, Any] = field(default_factory=dict)  # overrides of the preset: other samples, same budget

    def row(self) -> fm.Row:
        return fm.Row(self.name, self.description, synthesis=self.synthesis, distill=self.distill,
                      online_teacher=self.online_teacher, epochs_factor=self.epochs_factor)


CANDIDATES = [
    Candidate("cake", "the paper's recipe on these samples (the budget curve's point; at k = 1 the `cake` "
              "row itself)", control=None),
    Candidate("long-student", "as cake, the student trained 4x as many epochs", control="cake", epochs_factor=4),
    Candidate("snapshots", "the 4 kept iterates of every sample (after T/4, T/2, 3T/4 and T steps): 4x the "
              "samples at the same synthesis cost", control="long-student", all_snapshots=True),
    Candidate("clamp-relabel", "samples clamped to the data's range [-1, 1] and relabelled by the teacher",
              control="cake", clamp=True),
    Candidate("mixup-online", "mixup of sample pairs, every mixed batch relabelled by the teacher",
              control="cake", distill=dict(mixup=True), online_teacher=True),
    Candidate("low-lr", "as cake, the student's peak learning rate 0.03 instead of 0.1", control="cake",
              distill=dict(lr=0.03)),
    Candidate("randaugment-online", "RandAugment on every sample (as the teacher was trained), every "
              "batch relabelled by the teacher", control="cake", distill=dict(augment="randaugment"),
              online_teacher=True),
    Candidate("clamp-long-student", "clamp-relabel, the student trained 4x as many epochs",
              control="long-student", clamp=True, epochs_factor=4),
    Candidate("randaugment-snapshots", "randaugment-online on the 4 kept iterates of every sample: 4x the "
              "samples", control="snapshots", all_snapshots=True, distill=dict(augment="randaugment"),
              online_teacher=True),
    Candidate("randaugment-mixup-snapshots", "randaugment-snapshots, then mixup of the augmented pairs (every "
              "mixed batch relabelled by the teacher)", control="randaugment-snapshots", all_snapshots=True,
              distill=dict(augment="randaugment", mixup=True), online_teacher=True),
    Candidate("randaugment-snapshots-high-lr", "randaugment-snapshots, the student's peak learning rate 0.2 "
              "instead of 0.1", control="randaugment-snapshots", all_snapshots=True,
              distill=dict(augment="randaugment", lr=0.2), online_teacher=True),
    Candidate("low-eta-randaugment-snapshots", "randaugment-snapshots on samples synthesised with step sizes "
              "1e-2 -> 1e-4 instead of 1e-1 -> 1e-5 (as many samples and steps)", control="randaugment-snapshots",
              all_snapshots=True, distill=dict(augment="randaugment"), online_teacher=True,
              synthesis=EXPERIMENTS["fashion-mnist"].student_variants["low-eta-randaugment-snapshots"].synthesis),
    # fashion_mnist_samples.py: low-eta's last fifth (below 3e-4) still misses its target class
    Candidate("mid-eta-randaugment-snapshots", "randaugment-snapshots on samples synthesised with step sizes "
              "1e-2 -> 3e-4 (low-eta without its smallest steps; as many samples and steps)",
              control="randaugment-snapshots", all_snapshots=True, distill=dict(augment="randaugment"),
              online_teacher=True, synthesis=dict(lr=1e-2, lr_decades=1.5)),
]
BY_NAME = {c.name: c for c in CANDIDATES}


def training_set(candidate: Candidate, synthetic, config, stride: int, steps: int, teacher, device):
    """The candidate's training set from one seed's `cake` samples."""
    if candidate.all_snapshots:
        batch = torch.arange(len(synthetic)) // (config.snapshots * config.batch_size)
        keep = (batch % stride == 0) & (synthetic.step <= steps)
        train = synthetic if keep.all() else synthetic.subset(keep)  # the paper's budget: no 4-GB copy
    else:
        train = fm.budget_subset(synthetic, config, stride, steps)
    if not candidate.clamp:
        return train
    x = train.x.clamp(-1, 1)
    return x, fm.teacher_soft_labels(teacher, x, device)


def to_run(names: list[str], controls: bool = True) -> list[Candidate]:
    """The named candidates and, unless ``controls`` is False, their controls; controls first,
    so a stopped run leaves comparable pairs."""
    wanted = set(names)
    if controls:
        wanted |= {BY_NAME[name].control for name in wanted} - {None}
    return [c for c in CANDIDATES if c.name in wanted]


def checkpoint_name(candidate: Candidate, size: str, stride: int, steps: int, seed: int) -> str:
    """The control shares the budget curve's (or the `cake` row's) checkpoint: the same student."""
    tag = f"{size}-{fm.SIZES[size].teacher_epochs}-{TEACHER}"
    if candidate.name == "cake":
        if (stride, steps) == (1, fm.SIZES[size].steps):
            return f"{tag}-cake-s{seed}"
        return f"{tag}-curve-k{stride}-t{steps}-s{seed}"
    return f"{tag}-search-k{stride}-t{steps}-{candidate.name}-s{seed}"


def paired(results: dict, name: str) -> list[float] | None:
    """Per-seed differences (points) between a candidate and its control, on the seeds both have."""
    control = BY_NAME[name].control
    rows = results["rows"]
    if control is None or control not in rows or name not in rows:
        return None
    mine = {r["seed"]: r["student_accuracy"] for r in rows[name]["runs"]}
    theirs = {r["seed"]: r["student_accuracy"] for r in rows[control]["runs"]}
    return [100 * (mine[s] - theirs[s]) for s in sorted(mine.keys() & theirs.keys())]


def summarise(results: dict) -> str:
    s, size = results["settings"], results["settings"]["run_size"]
    lines = [f"FashionMNIST search: the `cake` samples of the {results['run_size']}-size run, every "
             f"k-th mini-batch (k = {s['stride']}) after {s['steps']} steps ({s['samples']:,} samples), student "
             f"LeNet-5-Half, batch {size['student_batch']}, {size['student_epochs']} epochs unless said; "
             f"{results['hardware_slug']}", "",
             "| candidate | control | student test accuracy (mean ± std) | minus control, paired (points) "
             "| seeds | per seed | what |", "|---|---|---:|---:|---:|---|---|"]
    for c in CANDIDATES:
        runs = results["rows"].get(c.name, {}).get("runs", [])
        if not runs:
            continue
        acc = [100 * r["student_accuracy"] for r in runs]
        mean = f"{statistics.mean(acc):.1f} ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else f"{acc[0]:.1f}"
        diff = paired(results, c.name)
        diff_text = "–" if not diff else (f"{statistics.mean(diff):+.1f} ± {statistics.stdev(diff):.1f}"
                                           if len(diff) > 1 else f"{diff[0]:+.1f}")
        per_seed = ", ".join(f"{r['seed']}: {100 * r['student_accuracy']:.1f}" for r in runs)
        lines.append(f"| {c.name} | {c.control or '–'} | {mean} | {diff_text} | {len(acc)} | {per_seed} "
                     f"| {c.description} |")
    teachers = teachers_by_seed(results)
    if teachers:
        lines += ["", "Teacher test accuracy by seed: " + ", ".join(
            f"{seed}: " + ", ".join(f"{100 * t['test_accuracy']:.2f} % ({name}, {t.get('weights', '?')})"
                                    for name, t in teachers[seed].items()) for seed in sorted(teachers, key=int))]
    machines = fm.machines_by_seed(results)
    lines += ["", f"Machines: {machines}"] if machines else []
    lines += ["", "Paper (256k x 256): CAKE 76.5 ± 1.01; the goal: a mean of at least 80 % over 3 seeds."]
    return "\n".join(lines)


def teachers_by_seed(results: dict) -> dict[str, dict]:
    """The teacher of every seed the file holds, ``{"0": {"authors": info}, ...}``.

    A machine without a kept teacher (``fm.teacher_path``) retrains it to slightly other
    weights (the authors' recipe: 90.26 % and 90.70 % test accuracy), so each seed records
    the teacher its runs used. A file from before these records has one
    ``teachers`` entry for all its seeds.
    """
    seeds = {r["seed"] for entry in results.get("rows", {}).values() for r in entry["runs"]}
    shared = {str(seed): results["teachers"] for seed in seeds} if "teachers" in results else {}
    return shared | results.get("teachers_by_seed", {})


def with_teachers(results: dict, seeds: list[int], teachers: dict, where: object) -> dict:
    """``results`` with ``teachers`` recorded for ``seeds``; stops if a seed's runs had another teacher.

    Candidates are paired with their controls seed by seed, so a seed's runs must share one
    teacher; different seeds may have different ones (the mean then spans teacher retrains).
    """
    known, new = teachers_by_seed(results), {str(seed): teachers for seed in seeds}
    check_seed_teachers(known, new, where)
    kept = {key: value for key, value in results.items() if key != "teachers"}
    return kept | {"teachers_by_seed": known | new}


def check_seed_teachers(recorded: dict[str, dict], current: dict[str, dict], where: object) -> None:
    """:func:`fm.check_same_teachers` for every seed both ``{seed: teachers}`` maps hold."""
    for seed in recorded.keys() & current.keys():
        fm.check_same_teachers(recorded[seed], current[seed], f"{where}, seed {seed},")


def merge(results: dict, other: dict) -> dict:
    results, other = fm.with_run_hardware(results), fm.with_run_hardware(other)
    if other.get("settings") != results.get("settings", other.get("settings")):
        raise SystemExit("the files were run at other sub-budgets; not merged")
    mine, theirs = teachers_by_seed(results), teachers_by_seed(other)
    check_seed_teachers(mine, theirs, "a merged file")
    merged = {**other, **results, "rows": fm.union_rows(results.get("rows", {}), other["rows"]),
              "commands": list(dict.fromkeys(results.get("commands", []) + other.get("commands", [])))}
    merged.pop("teachers", None)
    return merged | {"teachers_by_seed": theirs | mine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["smoke", "default", "paper"], default="paper",
                        help="whose `cake` samples (smoke: a pipeline check in seconds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stride", type=int, default=10, help="every k-th mini-batch (1: all 256,000 samples)")
    parser.add_argument("--steps", type=int, default=None,
                        help="the snapshot after this many steps (default: all the run's steps)")
    parser.add_argument("--candidates", nargs="+", default=[c.name for c in CANDIDATES], choices=list(BY_NAME))
    parser.add_argument("--no-controls", action="store_true",
                        help="only the named candidates, not their controls (run those later, or in another "
                             "process with --out, and --merge)")
    parser.add_argument("--channels-last", action="store_true",
                        help="CPU speed-up of the students (DistillConfig.channels_last: same values, other "
                             "rounding; recorded with each run)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                        help="add these files' runs (e.g. seeds run in parallel with --out) to the output file")
    args = parser.parse_args()
    size = fm.SIZES[args.size]
    cake = next(r for r in fm.ROWS if r.name == "cake")
    config = fm.synthesis_config(cake, size, 0)
    args.steps = args.steps or size.steps
    if args.steps not in config.snapshot_steps:
        parser.error(f"--steps must be one of the kept snapshots {list(config.snapshot_steps)}, got {args.steps}")
    if not 1 <= args.stride <= config.num_batches:
        parser.error(f"--stride must be between 1 and the run's {config.num_batches} mini-batches, got {args.stride}")

    device = distributed.init_from_env(args.device)
    world = distributed.rank_and_world()[1]
    hw = hardware(device) | {"processes": world}
    slug = hw.get("gpu", f"cpu-{hw['cpu_threads']}threads").lower().replace(" ", "-")
    out = Path(args.out) if args.out else \
        fm.HERE / "results" / f"fashion-mnist-search-{args.size}-k{args.stride}-t{args.steps}-{slug}.json"
    results = fm.with_run_hardware(json.loads(out.read_text())) if out.exists() else {"rows": {}}

    def save() -> None:
        if not distributed.is_main():
            return
        out.parent.mkdir(exist_ok=True)
        results["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        atomic_write_bytes(out, json.dumps(results, indent=1).encode())
        atomic_write_bytes(out.with_suffix(".md"), (summarise(results) + "\n").encode())

    if args.merge:
        for other in args.merge:
            results = merge(results, json.loads(Path(other).read_text()))
        save()
        print(summarise(results))
        return

    wanted = to_run(args.candidates, controls=not args.no_controls)
    teacher, info = fm.teacher_for(TEACHER, size, device)
    results = with_teachers(results, args.seeds, {TEACHER: info}, out)
    test = data.load_dataset("fashion-mnist", "test", resize=fm.TEACHER_RECIPES[TEACHER]["resize"])
    samples = len(range(0, config.num_batches, args.stride)) * config.batch_size
    results |= {"benchmark": "fashion-mnist-search", "run_size": args.size,
                "size": f"{args.size}, every k-th mini-batch (k = {args.stride}) after {args.steps} steps",
                "settings": {"stride": args.stride, "steps": args.steps, "samples": samples,
                             "run_size": dataclasses.asdict(size)},
                "hardware": hw, "hardware_slug": slug, "versions": versions(),
                "student_recipe": fm.STUDENT_RECIPE}
    launcher = f"torchrun --standalone --nproc_per_node={world}" if world > 1 else "python"
    command = f"{launcher} benchmarks/fashion_mnist_search.py " + shlex.join(sys.argv[1:])
    results["commands"] = list(dict.fromkeys(results.get("commands", []) + [command]))
    for seed in args.seeds:
        for candidate in wanted:
            entry = results["rows"].setdefault(candidate.name, {"runs": []})
            entry.update(description=candidate.description, control=candidate.control,
                         definition=dataclasses.asdict(candidate))
            if any(r["seed"] == seed for r in entry["runs"]):
                continue
            row = candidate.row()
            synthetic, _ = fm.synthetic_set(row, size, seed, teacher, TEACHER, device)
            config = fm.synthesis_config(row, size, seed)
            train = training_set(candidate, synthetic, config, args.stride, args.steps, teacher, device)
            t0, load = time.perf_counter(), os.getloadavg()[0]
            if args.channels_last:
                row = dataclasses.replace(row, distill={**row.distill, "channels_last": True})
            _, run = fm.student_on(train, size, seed, test, device, row=row, teacher=teacher,
                                   checkpoint=checkpoint_name(candidate, args.size, args.stride, args.steps, seed))
            entry["runs"].append({"seed": seed, "samples": len(train[0]) if isinstance(train, tuple) else len(train),
                                  **run, "seconds": time.perf_counter() - t0, "load_average_1min": load,
                                  "processes": world, "threads": torch.get_num_threads(),
                                  "hardware": hw, "versions": versions()})
            entry["runs"].sort(key=lambda r: r["seed"])
            fm.log(f"{candidate.name:14s} seed {seed}: student {run['student_accuracy']:.2%} "
                  f"({run['distill_seconds'] / 60:.1f} min)", flush=True)
            save()
    save()
    fm.log(summarise(results))


if __name__ == "__main__":
    main()
