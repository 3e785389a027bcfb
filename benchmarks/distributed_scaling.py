"""Synthesis and distillation in 1 vs N processes under torchrun: the speed-up, and that nothing changes.

    python benchmarks/distributed_scaling.py                      # 1 and 2 CPU processes (gloo), 1 thread each
    python benchmarks/distributed_scaling.py --nproc 1 2 4 --device cuda   # GPUs (NCCL), one per process

For each process count the script launches ``torchrun --standalone --nproc_per_node=N`` on
itself. Every rank synthesises with a LeNet-5 teacher (random weights: speed does not depend
on them; the MNIST preset's weights, batches of 500) into a fresh checkpoint directory, then
distils LeNet-5-Half on the result for one epoch with DistributedDataParallel. Rank 0 times
both stages between barriers and records a checksum of the samples, so the table also shows
that every process count produced the same samples. Writes
benchmarks/results/distributed-scaling-<hardware>.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def worker(args) -> None:
    import cake_mini as cm
    from cake_mini import distributed
    from cake_mini.models import make_model

    torch.set_num_threads(args.threads)
    device = distributed.init_from_env(args.device)
    rank, world = distributed.rank_and_world()
    torch.manual_seed(0)
    teacher = make_model("lenet5", 10).to(device).eval()
    config = cm.SynthesisConfig.preset("mnist", num_samples=args.samples, steps=args.steps, seed=0,
                                       parallel_batches=args.parallel_batches)
    distributed.barrier()
    t0 = time.perf_counter()
    synthetic = cm.synthesize(teacher, (1, 32, 32), 10, config, device=device, progress=False,
                              checkpoint_dir=Path(args.workdir) / "synthesis")
    distributed.barrier()
    t_synth = time.perf_counter() - t0
    torch.manual_seed(1)
    student = make_model("lenet5-half", 10).to(device)
    t0 = time.perf_counter()
    cm.distill(student, synthetic, cm.DistillConfig(epochs=args.epochs, batch_size=256, lr=0.1, val_fraction=0.0),
               device=device, progress=False)
    distributed.barrier()
    t_distill = time.perf_counter() - t0
    if rank == 0:
        digest = hashlib.sha256(synthetic.x.numpy().tobytes()).hexdigest()[:16]
        print("RESULT " + json.dumps({
            "processes": world, "threads_per_process": args.threads, "device": str(device),
            "synthesis_seconds": t_synth, "sample_steps_per_second": len(synthetic) * config.steps / t_synth,
            "distill_seconds": t_distill, "distill_samples_per_second": args.epochs * len(synthetic) / t_distill,
            "samples_sha256": digest}), flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--samples", type=int, default=4_000)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--parallel-batches", type=int, default=1,
                        help="batches per group; groups are what ranks share out")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from cake_mini.experiments import hardware, versions

    rows = []
    for n in args.nproc:
        with tempfile.TemporaryDirectory() as workdir:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                   __file__, "--worker", "--workdir", workdir, "--device", args.device,
                   "--threads", str(args.threads), "--samples", str(args.samples), "--steps", str(args.steps),
                   "--parallel-batches", str(args.parallel_batches), "--epochs", str(args.epochs)]
            load = os.getloadavg()[0]
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            if done.returncode:
                sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
            row = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0]) | {"load_before": load}
            rows.append(row)
            print(f"{n} process(es): synthesis {row['synthesis_seconds']:.1f} s "
                  f"({row['sample_steps_per_second']:,.0f} sample-steps/s), distill {row['distill_seconds']:.1f} s "
                  f"({row['distill_samples_per_second']:,.0f} samples/s), samples {row['samples_sha256']}", flush=True)
    base = rows[0]
    for row in rows:
        row["synthesis_speedup"] = base["synthesis_seconds"] / row["synthesis_seconds"]
        row["distill_speedup"] = base["distill_seconds"] / row["distill_seconds"]
        row["same_samples_as_first"] = row["samples_sha256"] == base["samples_sha256"]
    device = torch.device(args.device)
    hw = hardware(device)
    slug = hw.get("gpu", f"cpu-{os.cpu_count()}core").lower().replace(" ", "-")
    out = Path(args.out) if args.out else HERE / "results" / f"distributed-scaling-{slug}.json"
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "workdir", "out")}
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "hardware": hw, "versions": versions(), "rows": rows}, indent=1))
    print("\n| processes | synthesis s | speed-up | distill s | speed-up | same samples |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['synthesis_seconds']:.1f} | {r['synthesis_speedup']:.2f}x | "
              f"{r['distill_seconds']:.1f} | {r['distill_speedup']:.2f}x | {r['same_samples_as_first']} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
