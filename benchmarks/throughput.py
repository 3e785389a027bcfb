"""How fast do synthesis and distillation run on this machine, and how far is that from its peak?

    python benchmarks/throughput.py                  # full run, CPU or CUDA (--device auto), <= ~10 min
    python benchmarks/throughput.py --quick          # smoke check, about a minute on 2 CPU cores
    python benchmarks/throughput.py --device cuda    # writes benchmarks/results/throughput-<gpu-name>.json

Measures (issue 6):

* synthesis throughput in sample-steps/s of ``cake_mini.synthesize`` for a LeNet-5 teacher
  (1x32x32, MNIST preset loss weights) and a ResNet-34 teacher (3x32x32, cifar10 preset),
  sweeping ``parallel_batches``; each timing is a whole call (noise start, ``steps`` steps,
  final soft labels), best of ``reps`` after a warm-up call;
* the same config through ``synthesize_reference`` (one mini-batch at a time, fp32, eager):
  the speed-up of the fast path;
* FLOPs of one synthesis step (teacher forward + loss + gradient to the input) counted by
  ``torch.utils.flop_counter.FlopCounterMode``, hence the achieved FLOP/s as a fraction of the
  machine's own peak (best of a large fp32 matmul on CPU, a bf16 matmul on GPU);
* distillation throughput in samples/s of ``cake_mini.distill`` (one epoch);
* the projected wall time of the paper's sizes, and peak memory (CUDA: max allocated; CPU:
  RSS growth in a fresh process) with the largest ``parallel_batches`` that fits a 16 GB T4.

Teachers are randomly initialised: throughput does not depend on the weights. Timings on a
shared machine are noisy; the JSON records the load average before and after.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

import cake_mini as cm
from cake_mini.models import make_model
from cake_mini.precision import autocast, autocast_dtype
from cake_mini.synthesis import synthesis_objective

warnings.filterwarnings("ignore", message=".*TF32.*")

PAPER = {  # name: (teacher, samples, steps) of the paper's synthesis runs
    "fashion-mnist": ("lenet5", 256_000, 256),
    "cifar10": ("resnet34", 250_000, 256),
}
TEACHERS = {  # teacher: (input shape, preset)
    "lenet5": ((1, 32, 32), "mnist"),
    "resnet34": ((3, 32, 32), "cifar10"),
}
T4_BYTES = 15 * 2**30  # what torch can allocate on a 16 GB T4, roughly
GiB = 2**30


# ----------------------------------------------------------------------------- plans


def plan(device: torch.device, quick: bool) -> dict:
    """What to run: per teacher the batch sizes, parallel_batches values, steps, samples."""
    if device.type == "cuda":
        if quick:
            return {
                "lenet5": [dict(batch_size=500, steps=4, batches=8, parallel=[1, 8])],
                "resnet34": [dict(batch_size=500, steps=2, batches=2, parallel=[1, 2])],
                "reps": 1, "distill": {"lenet5-half": 8192, "resnet18": 2048}, "matmul": 4096,
            }
        return {
            "lenet5": [dict(batch_size=500, steps=8, batches=64, parallel=[1, 2, 4, 8, 16, 32, 64])],
            "resnet34": [dict(batch_size=500, steps=4, batches=8, parallel=[1, 2, 4, 8])],
            "reps": 2, "distill": {"lenet5-half": 32768, "resnet18": 8192}, "matmul": 8192,
        }
    if quick:
        return {
            "lenet5": [dict(batch_size=500, steps=3, batches=4, parallel=[1, 2, 4])],
            # a ResNet-34 step costs ~20-40 ms per sample on 2 cores: tiny batches on CPU
            "resnet34": [dict(batch_size=10, steps=1, batches=1, parallel=[1])],
            "reps": 1, "distill": {"lenet5-half": 2048, "resnet18": 32}, "matmul": 1024,
        }
    return {
        "lenet5": [dict(batch_size=500, steps=8, batches=16, parallel=[1, 2, 4, 8, 16]),
                   dict(batch_size=100, steps=8, batches=16, parallel=[1, 4, 8, 16])],
        "resnet34": [dict(batch_size=20, steps=2, batches=4, parallel=[1, 2, 4])],
        "reps": 2, "distill": {"lenet5-half": 8192, "resnet18": 256}, "matmul": 2048,
    }


# ----------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int) -> float:
    """Best wall time of ``reps`` calls of ``fn`` (seconds)."""
    best = math.inf
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def teacher_for(name: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    shape, _ = TEACHERS[name]
    return make_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1]).eval().to(device)


def config_for(name: str, run: dict, parallel: int) -> cm.SynthesisConfig:
    _, preset = TEACHERS[name]
    return cm.SynthesisConfig.preset(preset, batch_size=run["batch_size"], steps=run["steps"],
                                     num_samples=run["batch_size"] * run["batches"],
                                     parallel_batches=parallel)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages: above the core count, timings are unreliable."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def hardware(device: torch.device) -> dict:
    info = {"device": str(device), "cpu": cpu_name(), "cpu_cores": cpu_cores(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "loadavg_start": loadavg()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / GiB, 1),
                 "gpu_capability": f"{props.major}.{props.minor}",
                 "bf16_supported": torch.cuda.is_bf16_supported()}
        info["slug"] = slug(props.name)
    else:
        info["slug"] = f"cpu-{cpu_cores()}core"
    return info


def versions() -> dict:
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "mkldnn": torch.backends.mkldnn.is_available(), "numpy": numpy.__version__,
            "cake_mini": cm.__version__}


# ----------------------------------------------------------------------------- measurements


def peak_matmul(device: torch.device, n: int, reps: int = 5) -> dict:
    """The machine's own yardstick: best FLOP/s of an n^3 matmul: fp32 on CPU, bf16 on GPUs with
    bf16 tensor cores, fp16 on older ones (a T4 has fp16 tensor cores only)."""
    dtype = torch.float32
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    inner = 10 if device.type == "cuda" else 1
    a @ b  # warm-up
    seconds = timed(lambda: [a @ b for _ in range(inner)], device, reps) / inner
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "flops_per_s": 2 * n**3 / seconds}


def step_flops(teacher, shape, cfg: cm.SynthesisConfig, device: torch.device) -> float:
    """FLOPs per sample of one synthesis step: forward, loss, gradient w.r.t. the input."""
    from torch.utils.flop_counter import FlopCounterMode

    # FlopCounterMode's module hooks reject autograd.grad(); backward() on a frozen copy of
    # the teacher computes the same thing: gradients for x only, none for the weights.
    frozen = copy.deepcopy(teacher).requires_grad_(False)
    n = k = cfg.group_size or 10
    x = torch.randn(n, *shape, device=device, requires_grad=True)
    y = torch.arange(n, device=device) % 10
    with FlopCounterMode(display=False) as counter:
        synthesis_objective(frozen(x), x, y, k, cfg, 1).sum().backward()
    return counter.get_total_flops() / n


def synthesis_throughput(name: str, runs: list[dict], reps: int, device: torch.device,
                         peak: float, log) -> dict:
    shape, preset = TEACHERS[name]
    teacher = teacher_for(name, device)
    # warm-up: allocator, oneDNN/cuDNN kernel choice, lazy imports
    warm = config_for(name, runs[0], 1).replace(num_samples=runs[0]["batch_size"], steps=1)
    cm.synthesize(teacher, shape, 10, warm, device=device, progress=False)
    cm.synthesize_reference(teacher, shape, 10, warm, device=device)
    flops = step_flops(teacher, shape, warm, device)
    out = {"input_shape": list(shape), "preset": preset, "flops_per_sample_step": flops, "runs": []}
    for run in runs:
        row = {"batch_size": run["batch_size"], "steps": run["steps"],
               "num_samples": run["batch_size"] * run["batches"], "parallel_batches": {}}
        work = row["num_samples"] * run["steps"]
        # configs interleaved within each repetition, so that a busy spell hits all alike
        best = {p: math.inf for p in run["parallel"]} | {"reference": math.inf}
        for _ in range(reps):
            for p in best:
                if best[p] is None:  # ran out of memory before
                    continue
                if p == "reference":
                    cfg = config_for(name, run, 1)
                    call = lambda: cm.synthesize_reference(teacher, shape, 10, cfg, device=device)  # noqa: E731
                else:
                    cfg = config_for(name, run, p)
                    call = lambda: cm.synthesize(teacher, shape, 10, cfg, device=device, progress=False)  # noqa: E731
                s = None
                try:
                    s = timed(call, device, 1)
                except torch.cuda.OutOfMemoryError:
                    pass
                if s is None:  # outside the except block, so that the failed call's tensors are freed
                    best[p] = None
                    torch.cuda.empty_cache()
                    continue
                best[p] = min(best[p], s)
        ref = best.pop("reference")
        row["reference"] = work / ref if ref else math.nan
        for p, s in best.items():
            row["parallel_batches"][str(p)] = "out of memory" if s is None else work / s
            log(f"  {name} B={run['batch_size']} P={p:<3d}: "
                + ("out of memory" if s is None else f"{work / s:10.0f} sample-steps/s"))
        ok = {int(p): v for p, v in row["parallel_batches"].items() if not isinstance(v, str)}
        row["best_parallel_batches"] = max(ok, key=ok.get)
        row["best"] = ok[row["best_parallel_batches"]]
        row["speedup_vs_reference"] = row["best"] / row["reference"]
        row["achieved_flops_per_s"] = row["best"] * flops
        row["fraction_of_peak"] = row["achieved_flops_per_s"] / peak
        row["reference_fraction_of_peak"] = row["reference"] * flops / peak
        log(f"  {name} B={run['batch_size']} reference: {row['reference']:10.0f} sample-steps/s "
            f"-> fast path x{row['speedup_vs_reference']:.2f}")
        out["runs"].append(row)
    # the summary (and the paper projection) uses the preset's batch size where it was run:
    # the batch size is part of the method, parallel_batches only of the implementation
    preset_b = cm.SynthesisConfig.preset(preset).batch_size
    same = [r for r in out["runs"] if r["batch_size"] == preset_b]
    best = max(same or out["runs"], key=lambda r: r["best"])
    out |= {k: best[k] for k in ("best", "best_parallel_batches", "reference", "speedup_vs_reference",
                                 "achieved_flops_per_s", "fraction_of_peak")}
    out["best_batch_size"] = best["batch_size"]
    return out


def layout_probe(name: str, n: int, device: torch.device, rounds: int) -> dict:
    """One synthesis step (forward, loss, input gradient) with NCHW vs channel-last inputs.

    synthesize() stores one-channel images channel-last on CPU; this records what that
    layout is worth on this machine (on CUDA it is not used yet: the numbers decide)."""
    shape, preset = TEACHERS[name]
    teacher = teacher_for(name, device)
    cfg = cm.SynthesisConfig.preset(preset, batch_size=n)
    x = torch.randn(n, *shape, device=device)
    if shape[0] == 1:
        x_cl = torch.empty_strided(x.shape, (x.stride(0), 1, x.stride(2), 1), device=device).copy_(x)
    else:
        x_cl = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(n, device=device) % 10
    def step(x0):
        xx = x0.detach().requires_grad_(True)
        with autocast(device, "auto"):  # as synthesize() with precision="auto"
            logits = teacher(xx)
        torch.autograd.grad(synthesis_objective(logits, xx, y, 10, cfg, 1).sum(), xx)

    layouts = {"nchw": x, "channels_last": x_cl}
    best = dict.fromkeys(layouts, math.inf)
    for tensor in layouts.values():
        step(tensor)
    for _ in range(rounds):  # interleaved, so that a busy spell hits both layouts alike
        for label, tensor in layouts.items():
            best[label] = min(best[label], timed(lambda: step(tensor), device, 1))
    result = {"samples": n, "rounds": rounds} | {label: n / t for label, t in best.items()}
    result["channels_last_speedup"] = result["channels_last"] / result["nchw"]
    return result


def distill_throughput(student_name: str, n: int, device: torch.device, reps: int) -> dict:
    shape = (1, 32, 32) if student_name.startswith("lenet") else (3, 32, 32)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    soft = torch.randn(n, 10, generator=g).softmax(-1)
    data = torch.utils.data.TensorDataset(x, soft)
    cfg = cm.DistillConfig(epochs=1, batch_size=256)

    def run(dataset):
        torch.manual_seed(0)
        student = make_model(student_name, in_channels=shape[0]).to(device)
        cm.distill(student, dataset, cfg, device=device, progress=False)

    warm = min(512, n // 4)
    run(torch.utils.data.TensorDataset(x[:warm], soft[:warm]))  # warm-up
    seconds = timed(lambda: run(data), device, reps)
    return {"student": student_name, "input_shape": list(shape), "samples": n, "epochs": 1,
            "batch_size": cfg.batch_size, "samples_per_s": n / seconds}


def memory_cuda(device: torch.device) -> dict:
    """Peak CUDA memory of the cifar10 preset (ResNet-34, batch 500) at its parallel_batches.

    Measured with precision="auto" and, where that means bf16 or fp16, again in fp32; the
    T4 fit uses the fp32 bytes per sample (an upper bound for its fp16 "auto")."""
    teacher = teacher_for("resnet34", device)
    preset = cm.SynthesisConfig.preset("cifar10")
    p, b = preset.parallel_batches, preset.batch_size
    out = {"kind": "torch.cuda.max_memory_allocated", "parallel_batches": p, "batch_size": b}
    for precision in ["auto"] + (["fp32"] if autocast_dtype(device, "auto") is not None else []):
        peaks = {}
        for q in sorted({1, p}):
            cfg = preset.replace(num_samples=q * b, steps=2, parallel_batches=q, precision=precision)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            cm.synthesize(teacher, (3, 32, 32), 10, cfg, device=device, progress=False)
            peaks[q] = torch.cuda.max_memory_allocated(device) - base
        per_sample = (peaks[p] - peaks[1]) / ((p - 1) * b) if p > 1 else peaks[1] / b
        dtype = autocast_dtype(device, precision)
        label = f"{str(dtype).removeprefix('torch.')} autocast" if dtype is not None else "fp32"
        out[label] = {"peak_bytes": peaks[p], "peak_bytes_parallel_1": peaks[1], "bytes_per_sample": per_sample,
                      "fixed_bytes": max(0.0, peaks[1] - per_sample * b)}
        if precision == "auto":
            out |= {"precision": label} | out[label]
    fp32 = out["fp32"]
    return out | t4_fit(fp32["bytes_per_sample"], fp32["fixed_bytes"], preset)


def _memprobe(name: str, n: int) -> None:
    """Child process: RSS growth of one synthesize() call with n samples in one batch."""
    torch.set_num_threads(1)
    shape, preset = TEACHERS[name]
    teacher = teacher_for(name, torch.device("cpu"))
    cfg = cm.SynthesisConfig.preset(preset, num_samples=n, batch_size=n, steps=1, parallel_batches=1)
    # warm-up on 2 samples, so that its high-water mark stays below the measured call's
    cm.synthesize(teacher, shape, 10, cfg.replace(num_samples=2, batch_size=2, group_size=2), progress=False)
    with contextlib.suppress(OSError):  # Linux: reset the high-water mark to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    before = peak_rss()
    cm.synthesize(teacher, shape, 10, cfg, progress=False)
    print(json.dumps({"rss_growth_bytes": peak_rss() - before}))


def peak_rss() -> int:
    """Peak resident memory of this process in bytes.

    Linux: VmHWM of /proc/self/status, which /proc/self/clear_refs resets. getrusage's
    ru_maxrss cannot be reset and, in a child, starts at the parent's peak (it is
    inherited through fork). Elsewhere: ru_maxrss."""
    with contextlib.suppress(OSError, StopIteration):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
        return int(line.split()[1]) * 1024
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit


def memory_cpu(name: str, sizes: list[int]) -> dict:
    """Peak RSS growth (fresh process per size) and bytes per sample from a least-squares line."""
    growth = {}
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--_memprobe", name, str(n)], capture_output=True,
                             text=True, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        growth[n] = json.loads(out.stdout.strip().splitlines()[-1])["rss_growth_bytes"]
    xs, ys = list(growth), list(growth.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    fixed = max(0.0, my - slope * mx)
    preset = cm.SynthesisConfig.preset(TEACHERS[name][1])
    chunk = preset.parallel_batches * preset.batch_size
    return {"kind": "peak RSS growth of one synthesize() call, fresh process per size, fp32",
            "teacher": name, "rss_growth_bytes": {str(k): v for k, v in growth.items()},
            "bytes_per_sample": slope, "fixed_bytes": fixed,
            "parallel_batches": preset.parallel_batches, "batch_size": preset.batch_size,
            "projected_peak_bytes": fixed + slope * chunk} | t4_fit(slope, fixed, preset)


def t4_fit(per_sample: float, fixed: float, preset: cm.SynthesisConfig) -> dict:
    """Largest parallel_batches whose samples fit a T4 (15 GiB allocatable, 10 % headroom)."""
    samples = max(0.0, 0.9 * T4_BYTES - fixed) / max(per_sample, 1.0)
    return {"t4_max_samples": int(samples), "t4_max_parallel_batches": int(samples // preset.batch_size),
            "t4_fits_preset": preset.parallel_batches * preset.batch_size <= samples}


# ----------------------------------------------------------------------------- report


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def table(res: dict) -> str:
    peak = res["peak"]["flops_per_s"]
    rows = [("machine", f"{res['hardware'].get('gpu', res['hardware']['cpu'])}",
             f"{res['hardware']['cpu_cores']} cores, {res['hardware']['torch_threads']} torch threads, "
             f"load average {res['hardware']['loadavg_start']} -> {res['hardware']['loadavg_end']}"),
            (f"peak ({res['peak']['dtype']} matmul {res['peak']['n']}^3)", f"{peak / 1e9:.1f} GFLOP/s", "1.00")]
    for name, s in res["synthesis"].items():
        for run in s["runs"]:
            sweep = ", ".join(f"P={p}: {num(v)}" if not isinstance(v, str) else f"P={p}: {v}"
                              for p, v in run["parallel_batches"].items())
            rows.append((f"synthesis {name}, B={run['batch_size']}, {run['steps']} steps",
                         f"{num(run['best'])} sample-steps/s (P={run['best_parallel_batches']})",
                         f"{run['fraction_of_peak']:.4f} of peak; sweep {sweep}"))
            rows.append(("  reference loop, same config", f"{num(run['reference'])} sample-steps/s",
                         f"fast path x{run['speedup_vs_reference']:.2f}; "
                         f"{run['reference_fraction_of_peak']:.4f} of peak"))
        rows.append((f"  FLOPs per sample-step ({name})", f"{s['flops_per_sample_step'] / 1e6:.2f} MFLOP",
                     f"achieved {s['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s"))
    for name, d in res["distill"].items():
        rows.append((f"distill {name}, {d['samples']} samples, 1 epoch", f"{num(d['samples_per_s'])} samples/s", ""))
    for name, p in res["projection"].items():
        rows.append((f"projected {name}: {p['samples']:,} x {p['steps']} steps", human_time(p["fast_seconds"]),
                     f"reference loop {human_time(p['reference_seconds'])}"))
    m = res["memory"]
    if "peak_bytes" in m:
        rows.append((f"peak memory cifar10 preset (P={m['parallel_batches']}, {m['precision']})",
                     f"{m['peak_bytes'] / GiB:.2f} GiB",
                     f"{m['bytes_per_sample'] / 2**20:.1f} MiB/sample; fp32 "
                     f"{m['fp32']['bytes_per_sample'] / 2**20:.1f} MiB/sample: a T4 (fp32) fits "
                     f"P <= {m['t4_max_parallel_batches']}"))
    else:
        rows.append((f"peak memory {m['teacher']} (CPU RSS, fp32)",
                     f"{m['bytes_per_sample'] / 2**20:.2f} MiB/sample",
                     f"preset P={m['parallel_batches']} x B={m['batch_size']}: "
                     f"{m['projected_peak_bytes'] / GiB:.2f} GiB; a T4 fits P <= {m['t4_max_parallel_batches']} "
                     "in fp32"))
    for name, lp in res.get("layout_probe", {}).items():
        rows.append((f"layout {name}, {lp['samples']} samples, one step",
                     f"channels-last x{lp['channels_last_speedup']:.2f}",
                     f"NCHW {num(lp['nchw'])}, channels-last {num(lp['channels_last'])} sample-steps/s"))
    lines = ["| measure | value | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--quick", action="store_true", help="smoke check: about a minute on 2 CPU cores")
    ap.add_argument("--out", help="JSON path; default benchmarks/results/throughput-<hardware>[-quick].json")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--_memprobe", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._memprobe:
        _memprobe(args._memprobe[0], int(args._memprobe[1]))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")

    t_start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    p = plan(device, args.quick)
    res = {"benchmark": "throughput", "quick": args.quick, "hardware": hardware(device),
           "versions": versions(), "plan": p,
           "synthesis_precision": str(autocast_dtype(device, "auto") or "fp32").removeprefix("torch."),
           "reference_precision": "fp32"}
    log(f"device {device}: {res['hardware'].get('gpu', res['hardware']['cpu'])}, "
        f"{torch.get_num_threads()} torch threads")

    sections = res["section_seconds"] = {}
    mark = time.perf_counter()

    def lap(name):
        nonlocal mark
        sections[name] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()

    res["peak"] = peak_matmul(device, p["matmul"])
    lap("peak")
    peak = res["peak"]["flops_per_s"]
    log(f"peak {res['peak']['dtype']} matmul: {peak / 1e9:.1f} GFLOP/s")

    res["synthesis"] = {}
    for name in TEACHERS:
        res["synthesis"][name] = synthesis_throughput(name, p[name], p["reps"], device, peak, log)
        lap(f"synthesis {name}")
    res["projection"] = {}
    for paper, (name, samples, steps) in PAPER.items():
        s = res["synthesis"][name]
        res["projection"][paper] = {
            "teacher": name, "samples": samples, "steps": steps,
            "fast_seconds": samples * steps / s["best"], "reference_seconds": samples * steps / s["reference"],
            "from": f"best measured sample-steps/s at B={s['best_batch_size']}, P={s['best_parallel_batches']}"
                    + ("" if s["best_batch_size"] == 500 else " (the paper uses B=500; per-sample cost barely "
                                                                "depends on B at these sizes)")}

    n, rounds = (500, 3) if args.quick else (1000, 6)
    res["layout_probe"] = {"lenet5": layout_probe("lenet5", n, device, rounds)}
    if device.type == "cuda":
        res["layout_probe"]["resnet34"] = layout_probe("resnet34", n, device, rounds)
    lap("layout probe")

    log("distillation ...")
    res["distill"] = {name: distill_throughput(name, n, device, p["reps"]) for name, n in p["distill"].items()}
    for d in res["distill"].values():
        log(f"  distill {d['student']}: {d['samples_per_s']:.0f} samples/s")
    lap("distill")

    log("memory ...")
    if device.type == "cuda":
        res["memory"] = memory_cuda(device)
    else:
        res["memory"] = memory_cpu("resnet34", [10, 20] if args.quick else [10, 40, 80])
    lap("memory")
    res["hardware"]["loadavg_end"] = loadavg()
    res["seconds"] = time.perf_counter() - t_start

    # busy: another process held a core when we started, or more than one beside ours at the end
    start, end, cores = res["hardware"]["loadavg_start"], res["hardware"]["loadavg_end"], cpu_cores()
    busy = bool(start and end and (start[0] >= 1.0 or end[0] > cores + 1))
    res["busy_machine"] = busy
    print(table(res))
    if busy:
        print(f"\nWARNING: load average {start} at the start, {end} at the end on {cores} cores: other "
              "processes competed for the CPU and these timings are unreliable (multi-threaded ones most).")
    out = Path(args.out or Path(__file__).resolve().parent / "results" /
               f"throughput-{res['hardware']['slug']}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nwrote {out} in {res['seconds']:.0f} s")
    return res


if __name__ == "__main__":
    main()
