"""``cake-mini``: the command line. Glue only; every step lives in the package.

    cake-mini run digits                       # embedded data, minutes on a CPU
    cake-mini run fashion-mnist --size paper --seed 1 --out runs/fm-paper
    cake-mini list
"""
from __future__ import annotations

import argparse
import sys

from .sizes import SIZES


def main(argv: list[str] | None = None) -> int:
    from .experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(prog="cake-mini", description="Data-free knowledge distillation with CAKE.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train or load a teacher, synthesise, distil, evaluate")
    run.add_argument("experiment", help=f"one of: {', '.join(EXPERIMENTS)}")
    run.add_argument("--size", choices=SIZES, default=None,
                     help="budget (default: $CAKE_MINI_SIZE or 'default')")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default=None, help="output directory (default: runs/EXPERIMENT-SIZE-sSEED); "
                     "rerunning the same command resumes from what is there")
    run.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    run.add_argument("--stand-in", action="store_true",
                     help="use random class-structured data of the data set's shape (pipeline check only)")
    run.add_argument("--student-variant", default=None, metavar="NAME",
                     help="train the student beyond the paper's recipe (some variants also synthesise with other "
                          "step sizes, at the same budget): one of the experiment's measured variants (see "
                          "`cake-mini list`); default: the paper's recipe")
    run.add_argument("--channels-last", action="store_true",
                     help="CPU speed-up of the student's training for one-channel images (same values, other "
                          "rounding, so not bit-identical to a run without it; recorded in results.json)")
    run.add_argument("--no-progress", action="store_true")
    sub.add_parser("list", help="list experiments")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, exp in EXPERIMENTS.items():
            print(f"{name:16s} {exp.description}")
            for variant, about in exp.student_variants.items():
                print(f"{'':16s}   --student-variant {variant}: {about.description}")
        return 0
    if args.experiment not in EXPERIMENTS:
        parser.error(f"unknown experiment {args.experiment!r}; choose one of: {', '.join(EXPERIMENTS)}")
    variants = EXPERIMENTS[args.experiment].student_variants
    if args.student_variant is not None and args.student_variant not in variants:
        parser.error(f"{args.experiment} has no student variant {args.student_variant!r}; "
                     f"choose one of: {', '.join(variants) or 'none (it has only the paper recipe)'}")
    from . import distributed
    from .data import DatasetNotFoundError
    from .experiments import run_experiment
    from .sizes import get_size

    size = get_size(args.size)
    variant = f"-{args.student_variant}" if args.student_variant else ""
    out = args.out or f"runs/{args.experiment}-{size}{variant}-s{args.seed}"
    device = distributed.init_from_env(args.device)  # under torchrun: join the job; else as given
    try:
        results = run_experiment(args.experiment, size=size, seed=args.seed, out=out, device=str(device),
                                 stand_in=args.stand_in, progress=not args.no_progress,
                                 student_variant=args.student_variant, channels_last=args.channels_last)
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not distributed.is_main():
        return 0
    print(f"teacher accuracy {results['teacher']['test_accuracy']:.2%}, "
          f"student accuracy {results['student']['test_accuracy']:.2%} "
          f"({results['size']} size, seed {results['seed']}, {results['seconds']['total']:.0f} s on "
          f"{results['hardware']['device']}); results in {out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
