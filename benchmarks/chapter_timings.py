"""How long each chapter takes at each size, on this CPU and on a Colab T4, into benchmarks/results/.

    python benchmarks/chapter_timings.py                      # measure smoke for chapters 1-10, then estimate
    python benchmarks/chapter_timings.py --chapters 4 5       # measure these again; the others are kept
    python benchmarks/chapter_timings.py --no-measure         # keep the measurements, redo the estimates
    python benchmarks/chapter_timings.py --table-only         # rewrite the .md from the JSON

Writes ``benchmarks/results/chapter-timings.json`` (read by ``cake_mini.book.chapter_timings``,
which every chapter shows after its setup cell) and a markdown table beside it. Each time says
whether it was measured or estimated, and every estimate says its basis in a note:

* ``smoke`` on this CPU is measured: each notebook (``notebooks/NN_*.py``) is converted with
  jupytext and executed with nbclient, ``CAKE_MINI_SIZE=smoke`` and ``OMP_NUM_THREADS=1``, in a
  fresh temporary folder, so a first run's teacher training is included (in the repository a
  second run loads the teachers from ``runs/``). This machine is shared with a long benchmark,
  so wall times are several times an idle machine's; the time shown is the CPU time of the
  notebook's kernel (its last cell reads ``getrusage``), the wall time and load average are kept.
* ``default`` and ``paper`` on this CPU: a work model. ``work()`` lists a chapter's synthesis
  and training steps at each size, read off its code; ``probe()`` times one such step with
  cake_mini's own functions on random data (CPU time, one thread) and counts its FLOPs; the
  rest of the chapter (plots, evaluation, imports) is its smoke CPU time minus the model's
  smoke steps. Where a committed benchmark ran the chapter's default settings on a lightly
  loaded machine (1-minute load average <= ``BUSY``, or not recorded), its time per seed is the
  default estimate instead and paper is scaled from it by the model; chapter 5's paper size
  comes from its measured paper-size run.
* Colab T4: no T4 was available to this project, so every T4 time is an estimate: the probes'
  FLOPs at a quarter of the T4's fp16 peak (65 TFLOP/s, chapter 7's basis), each step at least
  an assumed 2 ms of launch overhead, per-image augmentation and scikit-learn work as on this
  CPU, plus the rest of the chapter as on this CPU. Chapters that run on the CPU anyway
  (``book.setup(device="cpu")``) get their CPU times.

The probes are kept in the file and reused (``--reprobe`` repeats them, ``--recount-flops``
counts their FLOPs again).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results" / "chapter-timings.json"
SIZES = ("smoke", "default", "paper")
sys.path.insert(0, str(ROOT))
from cake_mini.book import format_duration  # noqa: E402
MACHINE = ("this project's 2-core CPU machine, one thread per notebook, shared with a long two-process "
           "benchmark of higher priority and with other jobs (load average in the file): wall times here are "
           "several times an idle machine's, so the smoke times are the notebook kernels' CPU times")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- measuring smoke


def notebook_of(chapter: str) -> Path:
    found = sorted((ROOT / "notebooks").glob(f"{chapter}_*.py"))
    if not found:
        raise FileNotFoundError(f"no notebooks/{chapter}_*.py")
    return found[0]


def measure_smoke(chapter: str, timeout: int = 3600) -> dict:
    """Execute the chapter at smoke size in a fresh folder; its wall time and load average."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    source = notebook_of(chapter)
    notebook = jupytext.read(source)
    notebook.cells.append(nbformat.v4.new_code_cell(RUSAGE_CELL))  # the kernel's CPU time, last
    env = {"CAKE_MINI_SIZE": "smoke", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "CAKE_MINI_RESULTS": str(HERE / "results"), "MPLBACKEND": "Agg"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    entry = {"notebook": str(source.relative_to(ROOT)), "started": _now(), "load_average_start": os.getloadavg()}
    try:
        with tempfile.TemporaryDirectory(prefix=f"chapter{chapter}-") as tmp:
            folder = Path(tmp) / "notebooks"
            folder.mkdir()
            nbformat.write(notebook, folder / f"{source.stem}.ipynb")
            client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(folder)}})
            t0 = time.perf_counter()
            try:
                client.execute()
                entry["ok"] = True
            except CellExecutionError as err:
                entry["ok"] = False
                entry["error"] = str(err).strip().splitlines()[-1][:300]
            entry["seconds"] = time.perf_counter() - t0
            entry["cells_seconds"] = _cell_seconds(notebook)
            entry |= _rusage(notebook)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    entry |= {"finished": _now(), "load_average_end": os.getloadavg()}
    return entry


RUSAGE_CELL = """import json, resource
_own, _kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("RUSAGE" + json.dumps({"cpu_seconds": _own.ru_utime + _own.ru_stime,
                             "children_cpu_seconds": _kids.ru_utime + _kids.ru_stime,
                             "max_rss_mb": _own.ru_maxrss / 1024}))"""


def _rusage(notebook) -> dict:
    """What the last cell printed: the kernel process's CPU seconds (user + system)."""
    for output in notebook.cells[-1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith("RUSAGE"):
                return json.loads(line[len("RUSAGE"):])
    return {}


def _cell_seconds(notebook) -> float:
    """Sum of the code cells' execution times (nbclient's timestamps): the run without kernel start."""
    total = 0.0
    for cell in notebook.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            parse = datetime.datetime.fromisoformat
            total += (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()
    return total


# ----------------------------------------------------------------------------- the work model

T4_FP16_PEAK, T4_SHARE = 65e12, 0.25  # chapter 7's basis: the T4's fp16 tensor-core peak, a quarter reached
T4_STEP_FLOOR = 2e-3  # assumed: no optimiser step (a few hundred kernel launches) takes less on a GPU
T4_RATE = T4_FP16_PEAK * T4_SHARE

# name -> (make_model name, options, input shape, classes)
MODELS = {
    "toy-mlp64x3": ("mlp", dict(in_features=2, hidden=64, depth=3), (2,), 3),
    "toy-mlp32x2": ("mlp", dict(in_features=2, hidden=32, depth=2), (2,), 3),
    "cnn32-8px": ("cnn", dict(in_channels=1, image_size=8, width=32), (1, 8, 8), 10),
    "cnn16-8px": ("cnn", dict(in_channels=1, image_size=8, width=16), (1, 8, 8), 10),
    "lenet5": ("lenet5", {}, (1, 32, 32), 10),
    "lenet5-half": ("lenet5-half", {}, (1, 32, 32), 10),
    "lenet5-bn": ("lenet5-bn", {}, (1, 32, 32), 10),
    **{f"lenet5-x{w:g}": ("lenet5", dict(width=w), (1, 32, 32), 10) for w in (0.25, 0.5, 1.0, 2.0)},
    "mlp256x3-32px": ("mlp", dict(hidden=256, depth=3), (1, 32, 32), 10),
    "mlp128x2-32px": ("mlp", dict(hidden=128, depth=2), (1, 32, 32), 10),
    "resnet34-1ch": ("resnet34", dict(in_channels=1), (1, 32, 32), 10),
    "resnet18-1ch": ("resnet18", dict(in_channels=1), (1, 32, 32), 10),
    "vit8-1ch": ("vit8", dict(in_channels=1), (1, 32, 32), 10),
    "vit4-1ch": ("vit4", dict(in_channels=1), (1, 32, 32), 10),
    "resnet34": ("resnet34", dict(in_channels=3), (3, 32, 32), 10),
    "resnet18": ("resnet18", dict(in_channels=3), (3, 32, 32), 10),
}
LARGE = ("resnet", "vit")  # probed on a few samples, scaled linearly to the batch


@dataclass
class Stage:
    """``steps`` optimiser steps of one kind, each like the probe ``probe`` (see :func:`probe`)."""

    label: str
    probe: tuple
    steps: float


def synth(label, model, samples, steps, batch, parallel=8, count=1, queries=0, method="synth"):
    """A synthesis (``synthesize``; ``queries`` > 0: through a black box) as optimiser steps."""
    per_step = min(samples, batch * parallel)
    launches = steps * math.ceil(math.ceil(samples / batch) / parallel)
    return Stage(label, (method, model, per_step, batch, queries), count * launches)


def train(label, model, images, epochs, batch, count=1, augment=None, teacher=None):
    """Training a model (``train_classifier``/``distill``; ``teacher``: relabelled online) as steps."""
    batch = min(batch, images)
    return Stage(label, ("train", model, batch, augment, teacher), count * epochs * math.ceil(images / batch))


def fixed(label, cpu_seconds, t4_seconds=None):
    """Work that the probes do not cover, with its time on this CPU (and on a T4, None: the same)."""
    return Stage(label, ("fixed", cpu_seconds, cpu_seconds if t4_seconds is None else t4_seconds), 1)


def pick(size, smoke, default, paper):
    return {"smoke": smoke, "default": default, "paper": paper}[size]


def work(chapter: str, size: str, files: dict) -> list[Stage]:
    """The chapter's synthesis and training at ``size``, read off its code (its ``pick`` values)."""
    p = lambda *v: pick(size, *v)  # noqa: E731
    if chapter == "01":
        if size == "smoke":
            images, teacher, student, t_batch = 1258, "cnn32-8px", "cnn16-8px", 64
        else:
            images, teacher, student, t_batch = 54_000, "lenet5", "lenet5-half", 256
        epochs = p(30, 10, 30)
        return [train("teacher", teacher, images, epochs, t_batch, augment="shift"),
                train("student, labels", student, images, epochs, 128),
                train("students, soft labels (distill and KD)", student, images, epochs, 128, count=2,
                      teacher=teacher)]
    if chapter == "02":
        samples, steps, epochs = p(2_000, 4_000, 25_600), p(100, 150, 500), p(40, 100, 100)
        return [train("5 toy teachers", "toy-mlp64x3", 1000, 60, 64, count=5),
                synth("one-batch strips and animation (7 x 400 steps)", "toy-mlp64x3", 90, 400, 90, 1, count=7),
                synth("explorer sweep (10 x 160 samples x 100 steps)", "toy-mlp64x3", 160, 100, 20, 8, count=10),
                synth("CAKE and LAKE sets (10)", "toy-mlp64x3", samples, steps, 30, 64, count=10),
                train("students (15)", "toy-mlp32x2", samples, epochs, 64, count=15)]
    if chapter == "03":
        return [train("2 toy teachers", "toy-mlp64x3", 600, 40, 64, count=2),
                synth("trajectories (6 x 20 samples)", "toy-mlp64x3", 20, p(200, 300, 500), 20, 1, count=6)]
    if chapter == "04":
        samples, steps, epochs = p(1_000, 5_000, 25_600), p(30, 50, 500), p(30, 60, 60)
        seeds, sweep_samples, sweep_steps = p(1, 2, 3), p(500, 2_000, 5_000), p(20, 50, 100)
        return [train("teacher", "cnn32-8px", 1258, 30, 64, augment="shift"),
                synth("reference settings (100 x 50)", "cnn32-8px", 100, 50, 100),
                synth("CAKE set", "cnn32-8px", samples, steps, 100),
                train("students on synthetic and noise sets", "cnn16-8px", samples, epochs, 128, count=2 * seeds),
                train("students on real images", "cnn16-8px", 1258, epochs, 128, count=seeds),
                train("KD students on real images", "cnn16-8px", 1258, epochs, 128, count=seeds, teacher="cnn32-8px"),
                synth("w_TV sweep (5 sets)", "cnn32-8px", sweep_samples, sweep_steps, 100, count=5),
                train("w_TV sweep students (5)", "cnn16-8px", sweep_samples, epochs, 128, count=5)]
    if chapter in ("05", "08"):
        teacher_images, teacher_epochs = p(10_000, 54_000, 54_000), p(1, 30, 30)
        stages = [train("LeNet-5 teacher (RandAugment)", "lenet5", teacher_images, teacher_epochs, 256,
                        augment="randaugment")]
        if chapter == "05":
            samples, steps, epochs = p(500, 25_600, 256_000), p(20, 256, 256), p(2, 30, 30)
            batch = p(100, 500, 500)
            return stages + [synth("CAKE set, and again with 4 snapshots", "lenet5", samples, steps, batch, 4, count=2),
                             train("students on the final samples (2)", "lenet5-half", samples, epochs, 256, count=2),
                             train("student on all 4 snapshots", "lenet5-half", 4 * samples, epochs, 256)]
        samples, steps, batch, queries = p(500, 5_000, 25_600), p(20, 256, 256), p(100, 500, 500), p(200, 2_000, 5_000)
        nearest = 3 * queries * 54_000 * 1024 * 4  # cdist and cosine of 3 query sets against the training set
        rate = files["throughput"]["peak"]["flops_per_s"]
        return stages + [synth("CAKE set", "lenet5", samples, steps, batch, 4),
                         fixed("nearest training images (matmul FLOPs at the measured matmul peak)", nearest / rate,
                               nearest / T4_RATE)]
    if chapter == "06":
        seeds, epochs_t, samples, steps, epochs = p(1, 1, 3), p(2, 30, 30), p(200, 2_000, 25_600), p(20, 100, 500), \
            p(15, 30, 30)
        widths = p([0.5, 1.0], [0.25, 0.5, 1.0, 2.0], [0.25, 0.5, 1.0, 2.0])
        types = p(["mlp", "cnn"], ["mlp", "cnn", "resnet", "vit"], ["mlp", "cnn", "resnet", "vit"])
        pairs = {"mlp": ("mlp256x3-32px", "mlp128x2-32px"), "cnn": ("lenet5", "lenet5-half"),
                 "resnet": ("resnet34-1ch", "resnet18-1ch"), "vit": ("vit8-1ch", "vit4-1ch")}
        stages = []
        for w in widths:
            stages += [train(f"LeNet-5 x{w:g} on data", f"lenet5-x{w:g}", 1438, epochs_t, 64, count=seeds,
                             augment="shift"),
                       synth(f"CAKE set of LeNet-5 x{w:g}", f"lenet5-x{w:g}", samples, steps, 100, count=seeds),
                       train(f"students LeNet-5 x{w:g} (one per teacher)", f"lenet5-x{w:g}", samples, epochs, 128,
                             count=seeds * len(widths))]
        for kind in types:
            teacher, student = pairs[kind]
            stages += [train(f"{kind} teacher and student on data", teacher, 1438, epochs_t, 64, count=seeds,
                             augment="shift"),
                       train(f"{kind} student on data", student, 1438, epochs_t, 64, count=seeds, augment="shift"),
                       synth(f"CAKE set of the {kind} teacher", teacher, samples, steps, 100, count=seeds),
                       train(f"{kind} students (one per teacher)", student, samples, epochs, 128,
                             count=seeds * len(types))]
        return stages
    if chapter == "07":
        images, epochs_t = p(64, 45_000, 45_000), p(1, 30, 200)
        samples, steps, epochs = p(20, 25_600, 250_000), p(3, 256, 256), p(1, 30, 30)
        batch, parallel = p(10, 500, 500), p(1, 2, 2)
        return [train("ResNet-34 teacher", "resnet34", images, epochs_t, 256, augment="flip-shift"),
                synth("CAKE set (cifar10 preset)", "resnet34", samples, steps, batch, parallel),
                train("ResNet-18 student", "resnet18", samples, epochs, 256)]
    if chapter == "09":
        samples, steps, epochs = p(300, 2_000, 5_000), p(10, 30, 50), p(30, 60, 60)
        sweep = p((1, 4), (1, 4, 16, 64), (1, 4, 16, 64, 256))
        cosine = sum(p((1, 4, 16, 64), (1, 4, 16, 64, 256, 1024), (1, 4, 16, 64, 256, 1024, 4096)))
        forest = files["black_box_forest"]  # seconds per sample-step and query, from the black-box file
        stages = [train("CNN teacher", "cnn32-8px", 1258, 30, 64, augment="shift"),
                  synth("cosine probe (64 samples, all query counts)", "cnn32-8px", 64, 1, 64, 1, queries=cosine,
                        method="blackbox"),
                  fixed("forest: black-box synthesis (q = 4, then the sweep)",
                        sum(forest * samples * steps * q for q in (4, *sweep))),
                  train("students (one per set)", "cnn16-8px", samples, epochs, 128, count=2 * len(sweep) + 4)]
        for q in sweep:
            stages.append(synth(f"CNN black box, {q} queries", "cnn32-8px", samples, steps, 100, 8, queries=q,
                                method="blackbox"))
        return stages + [synth("CNN white box", "cnn32-8px", samples, steps, 100)]
    if chapter == "10":
        images, epochs_t = p(6_000, 54_000, 54_000), p(2, 4, 4)
        samples, steps, batch, channels, epochs = p(200, 2_000, 2_000), p(10, 40, 256), p(100, 200, 200), \
            p(16, 32, 128), p(10, 40, 40)
        stages = []
        for teacher in ("lenet5", "lenet5-bn"):
            stages += [train(f"{teacher} teacher", teacher, images, epochs_t, 256, augment="flip-shift"),
                       synth(f"{teacher}: CAKE", teacher, samples, steps, batch, 4),
                       synth(f"{teacher}: DeepInversion", teacher, samples, steps, batch, 1, method="deepinversion"),
                       Stage(f"{teacher}: DAFL", ("dafl", teacher, batch, channels), samples * steps // batch),
                       train(f"{teacher}: 5 students", "lenet5-half", samples, epochs, 128, count=5)]
        return stages
    raise KeyError(chapter)


# ----------------------------------------------------------------------------- probes


def _build(name: str):
    import torch

    from cake_mini.models import make_model

    arch, options, shape, classes = MODELS[name]
    torch.manual_seed(0)
    return make_model(arch, classes, **options), shape, classes


def probe(key: tuple, flops_only: bool = False) -> dict:
    """One optimiser step of ``key`` on this CPU: CPU seconds (one thread) and FLOPs.

    The step runs through cake_mini's own functions (``synthesize``, ``distill``,
    ``deep_inversion``, ``dafl``) on random data: seconds are process CPU time (a busy machine
    slows the wall clock, less so the CPU time), FLOPs from ``torch.utils.flop_counter``.
    Large models (ResNet, ViT) run a few samples and are scaled linearly to the batch.
    """
    import torch
    from torch.utils.data import TensorDataset
    from cake_mini import DistillConfig, SynthesisConfig, baselines, distill, synthesize
    from cake_mini.blackbox import BlackBoxTeacher

    torch.set_num_threads(1)
    kind, model_name = key[0], key[1]
    model, shape, classes = _build(model_name)
    large = any(model_name.startswith(k) for k in LARGE)

    if kind in ("synth", "blackbox", "deepinversion"):
        per_step, batch, queries = key[2], key[3], key[4]
        n = min(per_step, 10 if large else per_step, max(10, 4096 // max(queries, 1) // 10 * 10))
        b = min(batch, n)
        model.eval()

        def run(steps):
            if kind == "deepinversion":
                cfg = baselines.DeepInversionConfig(num_samples=n, batch_size=n, steps=steps)
                return baselines.deep_inversion(model, shape, classes, cfg, allow_no_batchnorm=True)
            teacher = model if kind == "synth" else BlackBoxTeacher(lambda q: model(q).softmax(-1), queries=queries)
            group = max(g for g in range(1, classes + 1) if b % g == 0)
            cfg = SynthesisConfig(num_samples=n, batch_size=b, steps=steps, parallel_batches=max(1, n // b),
                                  group_size=group, precision="fp32", w_tv=0.0 if len(shape) == 1 else 1e5)
            return synthesize(teacher, shape, classes, cfg, progress=False)
        reps = 1 if large or n < per_step else 5
        scale = per_step / n
    elif kind == "train":
        batch, augment, teacher_name = key[2], key[3], key[4]
        b = min(batch, 8 if large else batch)
        teacher = _build(teacher_name)[0].eval() if teacher_name else None
        x = torch.randn(b * 5, *shape)
        soft = torch.softmax(torch.randn(b * 5, classes), -1)

        def run(steps):
            data = TensorDataset(x[: b * steps], soft[: b * steps])
            cfg = DistillConfig(epochs=1, batch_size=b, val_fraction=0.0, augment=augment, precision="fp32",
                                shift_pixels=1 if shape[-1] == 8 else 2)
            return distill(model, data, cfg, teacher=teacher, progress=False)
        reps = 1 if large else 3
        scale = batch / b
    elif kind == "dafl":
        batch, channels = key[2], key[3]
        model.eval()

        def run(steps):
            cfg = baselines.DAFLConfig(num_samples=batch, steps=steps, batch_size=batch, channels=channels)
            return baselines.dafl(model, shape, classes, cfg)
        reps, scale = 3, 1.0
    else:
        raise KeyError(kind)
    run(1)  # warm-up
    counted = []
    for steps in (1, 2):  # the second step's FLOPs: a call's set-up and final labels removed
        with FlopCount() as counter:
            run(steps)
        counted.append(counter.total)
    flops = max(counted[1] - counted[0], 0)
    if flops_only:
        return {"flops": flops * scale}
    t0 = time.process_time()
    run(reps + 1)
    with_more = time.process_time() - t0
    t0 = time.process_time()
    run(1)
    one = time.process_time() - t0
    seconds = max(with_more - one, 1e-6) / reps  # per step, set-up cost of a call removed
    return {"cpu_seconds": seconds * scale, "flops": flops * scale, "scaled_by": scale}


class FlopCount:
    """FLOPs of the matmuls and convolutions run inside, by ``torch.utils.flop_counter``'s formulas.

    ``FlopCounterMode`` itself tracks modules with backward hooks, which ``autograd.grad``
    with respect to the input (what synthesis does) does not allow; this mode only counts.
    """

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    outer.total += formula(*args, **kwargs, out_val=out)
                return out

        self.total, self.mode = 0, Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def probe_name(key: tuple) -> str:
    return "/".join(str(k) for k in key)


# ----------------------------------------------------------------------------- estimates


def smoke_cell(measured: dict | None) -> dict:
    if not measured or not measured.get("ok"):
        why = (measured or {}).get("error", "not run")
        return {"seconds": None, "kind": "not estimated", "basis": f"the smoke run failed: {why}"}
    load = measured["load_average_start"][0], measured["load_average_end"][0]
    cpu = measured.get("cpu_seconds")
    if cpu is None:
        return {"seconds": measured["seconds"], "kind": "measured",
                "basis": f"wall time of a first run at smoke size on {measured['started'][:10]}, kernel start "
                         f"included; load average {load[0]:.1f} before, {load[1]:.1f} after on 2 cores"}
    return {"seconds": cpu, "kind": "measured",
            "basis": f"CPU time (one thread) of the notebook's kernel, a first run at smoke size (teachers "
                     f"trained) on {measured['started'][:10]}: close to its wall time on an idle core (waiting, e.g. "
                     f"for the disk, is not counted). On the "
                     f"shared machine (1-minute load average {load[0]:.1f} before, {load[1]:.1f} after, "
                     f"2 cores) the wall time was {measured['seconds']:.0f} s"}
def load_files() -> dict:
    """The committed results that the estimates use (see :func:`work` and :func:`anchor`)."""
    results = HERE / "results"
    read = lambda name: json.loads((results / name).read_text(encoding="utf8"))  # noqa: E731
    files = {name: read(f) for name, f in (
        ("throughput", "throughput-cpu-2core.json"), ("scaling", "distributed-scaling-cpu-2core.json"),
        ("ch02", "chapter02-toy2d-default-cpu-1threads.json"), ("ch04", "chapter04-digits-default-cpu-1threads.json"),
        ("ch08", "chapter08-samples-default-cpu-1threads.json"), ("black_box", "black-box-cpu-cpu-1threads.json"),
        ("fmnist_paper", "fashion-mnist-paper-cpu-1threads-x2.json"))}
    q64 = files["black_box"]["rows"]["forest-black-q64"]["runs"]
    settings = files["black_box"]["settings"]
    files["black_box_forest"] = statistics.mean(r["synthesis_seconds"] for r in q64) / (
        settings["num_samples"] * settings["steps"] * 64)
    return files


def stage_times(stage: Stage, probes: dict) -> tuple[float, float]:
    """(seconds on this CPU, seconds on a T4) of one stage."""
    if stage.probe[0] == "fixed":
        return stage.probe[1], stage.probe[2]
    p = probes[probe_name(stage.probe)]
    t4_step = max(p["flops"] / T4_RATE, T4_STEP_FLOOR)
    if stage.probe[0] == "train" and stage.probe[3] == "randaugment":  # per-image work: as on the CPU
        plain = probes[probe_name(("train", *stage.probe[1:3], None, stage.probe[4]))]
        t4_step += max(p["cpu_seconds"] - plain["cpu_seconds"], 0.0)
    return stage.steps * p["cpu_seconds"], stage.steps * t4_step


def needed_probes(stages: list[Stage]) -> list[tuple]:
    keys = []
    for stage in stages:
        if stage.probe[0] == "fixed":
            continue
        keys.append(stage.probe)
        if stage.probe[0] == "train" and stage.probe[3] == "randaugment":
            keys.append(("train", *stage.probe[1:3], None, stage.probe[4]))
    return keys


BUSY = 3.0  # a committed run whose 1-minute load average exceeded this (2 cores) is not used as the estimate


def anchor(chapter: str, files: dict) -> tuple[float, str, float | None] | None:
    """This CPU's time of the chapter at default size from a committed run of its settings, per seed.

    Returns (seconds, basis, the highest load average recorded at a seed's start and end, None if
    the file records none).
    """
    def per_seed(name):
        runs = files[name]["runs"]
        return statistics.mean(r["seconds"] for r in runs), len(runs)

    def load(name):
        return max(max(r["load_average_start"][0], r["load_average_end"][0]) for r in files[name]["runs"])
    if chapter in ("02", "04"):
        seconds, n = per_seed(f"ch{chapter}")
        name = f"chapter{chapter}-{'toy2d' if chapter == '02' else 'digits'}-default-cpu-1threads.json"
        return seconds, (f"the mean wall time of one seed in {name} ({n} seeds, 1 thread, shared machine): "
                         f"the chapter's default settings, not its plots and printouts"), load(f"ch{chapter}")
    if chapter == "08":
        seconds, n = per_seed("ch08")
        teacher = files["ch08"]["teacher"]["seconds_to_train_or_load"]
        return seconds + teacher, (f"the mean wall time of one seed in chapter08-samples-default-cpu-1threads.json "
                                   f"({n} seeds) plus the teacher's training ({teacher:.0f} s), 1 thread, shared "
                                   f"machine; the chapter's default settings"), load("ch08")
    if chapter == "09":
        rows = files["black_box"]["rows"]
        used = ["forest-black-q4", "forest-noise", *(f"forest-black-q{q}" for q in (1, 4, 16, 64)),
                *(f"cnn-black-q{q}" for q in (1, 4, 16, 64)), "cnn-white", "cnn-noise"]
        seconds = sum(statistics.mean(r["seconds"] for r in rows[name]["runs"]) for name in used)
        seconds += files["black_box"]["teachers"]["cnn"]["train_seconds"]
        return seconds, ("black-box-cpu-cpu-1threads.json (size cpu = the chapter's default budgets): the mean "
                         "seconds of the rows the chapter runs (forest q = 4 twice, the query sweep, white box, "
                         "noise) and the CNN teacher's training, 1 thread, shared machine (load not recorded)"), None
    return None


def estimates(chapter: str, measured: dict | None, probes: dict, files: dict) -> dict:
    """The chapter's row of the table: measured smoke time, the rest estimated (see the module doc)."""
    cpu: dict[str, dict] = {"smoke": smoke_cell(measured)}
    t4: dict[str, dict] = {}
    model = {size: [(stage.label, *stage_times(stage, probes)) for stage in work(chapter, size, files)]
             for size in SIZES}
    compute = {size: (sum(c for _, c, _ in rows), sum(t for _, _, t in rows)) for size, rows in model.items()}
    smoke_cpu = cpu["smoke"]["seconds"]
    other = max(smoke_cpu - compute["smoke"][0], 0.0) if smoke_cpu is not None else None
    check = {"model_cpu_seconds": {size: c for size, (c, _) in compute.items()},
             "model_t4_seconds": {size: t for size, (_, t) in compute.items()},
             "other_seconds": other, "stages": model}
    if other is None:
        for size in SIZES:
            t4[size] = {"seconds": None, "kind": "not estimated", "basis": "no smoke measurement to base it on"}
        return {"cpu": cpu | {s: dict(t4[s]) for s in ("default", "paper")}, "t4": t4, "model": check}
    model_basis = (f"work model: the chapter's synthesis and training steps at this size (from its code), each "
                   f"step's CPU time probed on this machine with cake_mini's own functions (one thread), plus "
                   f"{format_duration(other)} for the rest of the chapter (its smoke CPU time minus the model's "
                   f"smoke steps)")
    found = anchor(chapter, files)
    if found is not None:
        check["file_default_seconds"], check["file_load_average"] = found[0], found[2]
    if found is not None and found[2] is not None and found[2] > BUSY:
        seconds, basis, load = found
        for size in ("default", "paper"):
            cpu[size] = {"seconds": other + compute[size][0], "kind": "estimate", "basis": model_basis}
        cpu["default"]["basis"] += (f". Not used: {basis[4:]}, {format_duration(seconds)}, with the 1-minute load "
                                    f"average up to {load:.1f}: slowed by the other jobs")
    elif found is not None:
        seconds, basis, _ = found
        cpu["default"] = {"seconds": seconds, "kind": "estimate", "basis": f"from {basis}"}
        ratio = (other + compute["paper"][0]) / (other + compute["default"][0])
        cpu["paper"] = {"seconds": seconds * ratio, "kind": "estimate",
                        "basis": f"the default estimate times {ratio:.3g}, the ratio of paper to default in the "
                                 f"{model_basis}"}
    else:
        for size in ("default", "paper"):
            cpu[size] = {"seconds": other + compute[size][0], "kind": "estimate", "basis": model_basis}
    if chapter == "05":
        cpu["paper"] = chapter5_paper(other, files)
    t4_basis = (f"no T4 measured: FLOPs of the chapter's synthesis and training steps (torch.utils.flop_counter "
                f"on the probes) at 25 % of the T4's fp16 peak of 65 TFLOP/s (chapter 7's basis), each step at "
                f"least {T4_STEP_FLOOR * 1e3:.0f} ms (assumed launch overhead), per-image augmentation "
                f"(RandAugment) and scikit-learn work as on this CPU, plus {format_duration(other)} for the rest "
                f"of the chapter as on this CPU; Colab's start, the install and downloads not counted")
    if re.search(r"book\.setup\([^)]*device=[\"']cpu[\"']", notebook_of(chapter).read_text(encoding="utf8")):
        for size in SIZES:  # the chapter runs on the CPU also where there is a GPU
            t4[size] = {"seconds": cpu[size]["seconds"], "kind": "estimate",
                        "basis": "the chapter runs on the CPU also where a GPU is (book.setup(device=\"cpu\")): "
                                 "its time on this CPU, Colab's CPU assumed as fast"}
        return {"cpu": cpu, "t4": t4, "model": check}
    for size in SIZES:
        t4[size] = {"seconds": other + compute[size][1], "kind": "estimate", "basis": t4_basis}
    return {"cpu": cpu, "t4": t4, "model": check}


def chapter5_paper(other: float, files: dict) -> dict:
    """Chapter 5 at paper size from the measured paper-size run (torchrun, 2 processes of 1 thread)."""
    data = files["fmnist_paper"]
    run = data["rows"]["cake"]["runs"][0]
    scaling = {r["processes"]: r for r in files["scaling"]["rows"]}[2]
    synthesis = run["synthesis_seconds"] * scaling["synthesis_speedup"]
    students = run["distill_seconds"] * scaling["distill_speedup"] * 6  # N, N and 4N samples
    teacher = data["teachers"]["authors"]["train_seconds"] * scaling["distill_speedup"]
    total = other + 2 * synthesis + students + teacher
    return {"seconds": total, "kind": "estimate",
            "basis": f"from fashion-mnist-paper-cpu-1threads-x2.json, measured with 2 processes: synthesis "
                     f"{run['synthesis_seconds'] / 3600:.1f} h and student {run['distill_seconds'] / 60:.0f} min "
                     f"(seed 0), teacher {data['teachers']['authors']['train_seconds'] / 60:.0f} min; to one "
                     f"process by the speed-ups of distributed-scaling-cpu-2core.json (synthesis "
                     f"{scaling['synthesis_speedup']:.2f}, training {scaling['distill_speedup']:.2f}); the chapter "
                     f"synthesises twice (final samples, then 4 snapshots) and trains students on 6 times the "
                     f"samples of that run's one; plus {format_duration(other)} for the rest of the chapter"}


# ----------------------------------------------------------------------------- the file


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf8")
    os.replace(tmp, path)


def build(data: dict, reprobe: bool = False, out: Path | None = None) -> dict:
    """Probe what is not yet probed, then every chapter's estimates."""
    files = load_files()
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    probes = {} if reprobe else data.get("probes", {})
    for source in sources:
        for size in SIZES:
            for key in needed_probes(work(source.name[:2], size, files)):
                if probe_name(key) not in probes:
                    print(f"probing {probe_name(key)} ...", flush=True)
                    probes[probe_name(key)] = probe(key)
                    if out is not None:  # keep what was probed if the run stops
                        write(data | {"probes": probes}, out)
    data["probes"] = dict(sorted(probes.items()))
    chapters = {}
    for source in sources:
        chapter = source.name[:2]
        entry = {"title": title_of(source), "notebook": str(source.relative_to(ROOT))}
        entry |= estimates(chapter, data.get("measurements", {}).get(chapter), probes, files)
        chapters[chapter] = entry
    data["chapters"] = chapters
    return data


def title_of(source: Path) -> str:
    for line in source.read_text(encoding="utf8").splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    return source.stem


def markdown(data: dict, out: Path = OUT) -> str:
    from cake_mini.book import ChapterTimings

    lines = [f"### `{out.name}`", "", f"{data['title']}.", "", f"- date: {data.get('date')}",
             f"- machine: {data['machine']}", *(f"- command: `{c}`" for c in data.get("commands", [])), ""]
    for chapter in data.get("chapters", {}):
        lines += [ChapterTimings(chapter, out.name, data, data["chapters"][chapter]).markdown(), ""]
    return "\n".join(lines)


def write(data: dict, out: Path = OUT) -> None:
    atomic_write(out, json.dumps(data, indent=1) + "\n")
    atomic_write(out.with_suffix(".md"), markdown(data, out))


def torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", nargs="+", help="chapter numbers to measure (default: all)")
    parser.add_argument("--no-measure", action="store_true", help="keep the file's smoke measurements")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    parser.add_argument("--reprobe", action="store_true", help="probe every step again")
    parser.add_argument("--recount-flops", action="store_true", help="count the probes' FLOPs again")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch_threads()
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.table_only:
        atomic_write(args.out.with_suffix(".md"), markdown(data, args.out))
        return
    from cake_mini.experiments import hardware, versions

    command = "python benchmarks/chapter_timings.py " + shlex.join(sys.argv[1:])
    data |= {"benchmark": "chapter-timings",
             "title": "How long each chapter runs at each size, on this project's CPU and on a Colab T4",
             "machine": MACHINE,
             "t4_basis": "no T4 was available to this project: every T4 time is an estimate (see its note).",
             "hardware": hardware("cpu") | {"cpu_cores": os.cpu_count()},
             "versions": versions(), "commands": sorted({*data.get("commands", []), command})}
    data.setdefault("measurements", {})
    if not args.no_measure:
        chapters = [f"{int(c):02d}" for c in args.chapters] if args.chapters else \
            [p.name[:2] for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]
        for chapter in chapters:
            print(f"chapter {chapter}: executing at smoke size ...", flush=True)
            entry = measure_smoke(chapter, args.timeout)
            data["measurements"][chapter] = entry
            data["date"] = entry["finished"][:10]
            print(f"chapter {chapter}: {'ok' if entry['ok'] else 'FAILED ' + entry.get('error', '')} "
                  f"{entry['seconds']:.0f} s, load {entry['load_average_start'][0]:.1f} -> "
                  f"{entry['load_average_end'][0]:.1f}", flush=True)
            write(data, args.out)
    data["date"] = data.get("date") or _now()[:10]
    if args.recount_flops:
        for name in data.get("probes", {}):
            key = tuple(None if k == "None" else int(k) if k.isdigit() else k for k in name.split("/"))
            print(f"counting FLOPs of {name} ...", flush=True)
            data["probes"][name] |= probe(key, flops_only=True)
    write(build(data, args.reprobe, args.out), args.out)


if __name__ == "__main__":
    main()
