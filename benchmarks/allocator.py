"""Does the memory allocator slow the FashionMNIST run on CPU? glibc's malloc against jemalloc.

    python benchmarks/allocator.py                 # ~3 min on 2 CPU cores, one thread per process, one process at a time
    python benchmarks/allocator.py --steps 8 --batches 4   # a pipeline check

The paper-size synthesis optimises 4 mini-batches of 500 at once (the ``fashion-mnist``
preset's ``parallel_batches``): LeNet-5's first activation is 2,000 x 6 x 28 x 28 floats,
38 MB, above the 32 MB that glibc's malloc ever serves from its heap. Every step then maps
fresh pages from the kernel and unmaps them again, and the kernel zeroes each page it hands
out. jemalloc told to keep freed pages reuses them; with its defaults it hands them back
within seconds, and the faults return. Each allocator runs in a fresh process (the
allocator is chosen when a process starts: ``LD_PRELOAD``), one thread, on:

* ``synthesis``: ``cake_mini.synthesize`` with the ``fashion-mnist`` preset (4 snapshots, a
  randomly initialised LeNet-5: throughput does not depend on the weights), ``--steps`` steps;
* ``student``: the ``randaugment-snapshots`` student step of ``student_step.py`` (LeNet-5-Half,
  batch 256, RandAugment, the teacher relabelling every batch, channel-last).

Recorded per run: seconds, the rate, minor page faults, the kernel's share of the CPU time, the
peak memory and, for the synthesis, a SHA-256 of the samples: every allocator must give the same.
Writes benchmarks/results/allocator-<hardware>.json. Without jemalloc installed (Debian:
``apt-get install libjemalloc2``) only glibc runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

JEMALLOC_PATHS = ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                  "/usr/lib64/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2"]
RETAIN_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # never hand freed pages back to the kernel


def allocators() -> dict[str, dict[str, str]]:
    """Environment additions per allocator that this machine has.

    ``jemalloc`` runs with its defaults (freed pages go back to the kernel after about 10 s
    unused), ``jemalloc-retain`` keeps every freed page: the peak memory stays mapped.
    """
    found = {"glibc": {}}
    jemalloc = next((p for p in JEMALLOC_PATHS if Path(p).exists()), None)
    if jemalloc:
        found["jemalloc"] = {"LD_PRELOAD": jemalloc}
        found["jemalloc-retain"] = {"LD_PRELOAD": jemalloc, "MALLOC_CONF": RETAIN_CONF}
    return found


def child(phase: str, steps: int, batches: int) -> dict:
    """One measurement in this process; what it returns is printed as JSON for the parent."""
    import torch

    import cake_mini as cm
    from cake_mini import models
    from cake_mini.checkpoint import tensor_fingerprint

    torch.manual_seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF)
    if phase == "synthesis":
        teacher = models.make_model("lenet5", 10).eval()
        config = cm.SynthesisConfig.preset("fashion-mnist", snapshots=4)
        work = config.replace(num_samples=config.batch_size * config.parallel_batches, steps=steps)
        cm.synthesize(teacher, (1, 32, 32), 10, work.replace(steps=4), progress=False)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        synthetic = cm.synthesize(teacher, (1, 32, 32), 10, work, progress=False)
        seconds = time.perf_counter() - t0
        rate = {"sample_steps_per_s": work.num_samples * steps / seconds,
                "samples_sha256": tensor_fingerprint(synthetic.x, synthetic.soft_labels)}
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        import student_step

        distill_module = sys.modules["cake_mini.distill"]
        t0 = time.perf_counter()
        ms = student_step.time_variant(distill_module.rand_augment, True, batches, torch.device("cpu"))
        seconds = time.perf_counter() - t0
        rate = {"ms_per_step": ms}
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, **rate, "minor_page_faults": after.ru_minflt - before.ru_minflt,
            "kernel_share_of_cpu": (after.ru_stime - before.ru_stime) / cpu if cpu else None,
            "peak_rss_mib": after.ru_maxrss / 1024}


def run_child(phase: str, extra_env: dict[str, str], args: argparse.Namespace) -> dict:
    env = os.environ | extra_env | {"OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run([sys.executable, __file__, "--child", phase, "--steps", str(args.steps),
                          "--batches", str(args.batches)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the {phase} run under {extra_env or 'glibc'} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64, help="synthesis steps timed (of 4 x 500 samples)")
    parser.add_argument("--batches", type=int, default=100, help="student steps timed (of 256 samples)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=["synthesis", "student"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.batches)))
        return

    from cake_mini.experiments import hardware, versions

    found = allocators()
    load_before = os.getloadavg()[0]
    runs = {name: {phase: run_child(phase, env, args) for phase in ("synthesis", "student")}
            for name, env in found.items()}
    hw = hardware("cpu") | {"cpu_cores": os.cpu_count()}
    results = {"benchmark": "allocator",
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "what": "one process per allocator and phase, fashion-mnist preset synthesis (4 x 500 samples, "
                       f"{args.steps} steps) and the randaugment-snapshots student ({args.batches} steps of 256)",
               "threads": args.threads, "allocators": found, "runs": runs,
               "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
               "hardware": hw, "versions": versions() | {"glibc": os.confstr("CS_GNU_LIBC_VERSION")},
               "command": "python benchmarks/allocator.py " + " ".join(sys.argv[1:])}
    g = runs["glibc"]
    results["same_samples_as_glibc"] = {name: r["synthesis"]["samples_sha256"] == g["synthesis"]["samples_sha256"]
                                        for name, r in runs.items() if name != "glibc"}
    results["speedup_over_glibc"] = {
        name: {"synthesis": r["synthesis"]["sample_steps_per_s"] / g["synthesis"]["sample_steps_per_s"],
               "student": g["student"]["ms_per_step"] / r["student"]["ms_per_step"]}
        for name, r in runs.items() if name != "glibc"}
    out = Path(args.out) if args.out else \
        Path(__file__).parent / "results" / f"allocator-cpu-{os.cpu_count()}core-{args.threads}threads.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    for name, phases in runs.items():
        s, t = phases["synthesis"], phases["student"]
        print(f"{name:15s} synthesis {s['sample_steps_per_s']:6.0f} sample-steps/s ({s['minor_page_faults']:>9,} page "
              f"faults, kernel {s['kernel_share_of_cpu']:.0%}, peak {s['peak_rss_mib']:,.0f} MiB)   student "
              f"{t['ms_per_step']:6.1f} ms/step ({t['minor_page_faults']:>9,} page faults, kernel "
              f"{t['kernel_share_of_cpu']:.0%})")
    for name, speedup in results["speedup_over_glibc"].items():
        print(f"{name} over glibc: " + ", ".join(f"{k} x{v:.2f}" for k, v in speedup.items())
              + f"; the same samples (SHA-256): {results['same_samples_as_glibc'][name]}")
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; torch {results['versions']['torch']}; wrote {out}")


if __name__ == "__main__":
    main()
