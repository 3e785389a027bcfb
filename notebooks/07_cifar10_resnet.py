# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # CIFAR-10: ResNet-34 to ResNet-18, on a GPU
#
# The paper's CIFAR-10 row copies a ResNet-34 teacher (91.8 % test accuracy) into a
# ResNet-18 student that reaches 78.9 ± 2.59 % without seeing a CIFAR-10 image. Classic
# distillation with the data gets 94.3 % (with a stronger, 95.6 % teacher). ADI reaches
# 93.3 % without data, but it reads the teacher's batch-normalisation statistics, a summary
# of the training data that CAKE does not use.
#
# This chapter is the whole pipeline at that scale, written for a Colab GPU:
#
# 1. train the ResNet-34 teacher on CIFAR-10, or load a checkpoint you already have;
# 2. synthesise samples with the paper's CIFAR-10 preset (250,000 samples at `paper` size);
# 3. distil ResNet-18 from them, and evaluate both models on the test set.
#
# Runs of this size are long, and Colab sessions end. So every long step here writes its
# progress to a run directory and continues from it when the cell runs again. The last
# sections say how that works, what mixed precision and memory settings do, and what the
# command-line equivalent is.

# %% [markdown]
# ## Setup
#
# On Colab, choose **Runtime > Change runtime type > GPU** first. Then set the size in a
# cell above this one, e.g. `import os; os.environ["CAKE_MINI_SIZE"] = "default"`.

# %%
import hashlib
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

try:
    import cake_mini
except ImportError:  # on Colab, or anywhere the package is not installed yet
    # %pip install -q cake_mini
    import cake_mini

from cake_mini import (DistillConfig, SynthesisConfig, distill, evaluate, synthesize,
                       train_classifier)
from cake_mini.checkpoint import atomic_save, fingerprint, safe_load
from cake_mini.data import denormalize, load_dataset, stand_in
from cake_mini.experiments import EXPERIMENTS, Budget
from cake_mini.models import count_parameters, make_model
from cake_mini.sizes import get_size, pick
from cake_mini.viz import image_grid

SIZE = get_size()
SEED = 0
torch.manual_seed(SEED)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HARDWARE = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
            else f"CPU, {torch.get_num_threads()} thread(s)")
RUN = f"size={SIZE}, seed={SEED}, {HARDWARE}"  # printed next to every number
PROGRESS = SIZE != "smoke"

ROOT = Path("..") if Path("../pyproject.toml").exists() else Path(".")
RUNS = ROOT / "runs"
RUNS.mkdir(exist_ok=True)

EXP = EXPERIMENTS["cifar10-resnet"]  # the same experiment as `cake-mini run cifar10-resnet`
# smoke: a few images and steps, only to check that every line runs (on a CPU, in seconds)
BUDGET = pick(smoke=Budget(teacher_epochs=1, num_samples=20, steps=3, student_epochs=1),
              default=EXP.budgets["default"], paper=EXP.budgets["paper"])
STAND_IN = SIZE == "smoke"  # only at smoke size: random stand-in data instead of CIFAR-10
CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]
print(f"cake_mini {cake_mini.__version__}, torch {torch.__version__}; {RUN}")
print(f"budget: {BUDGET}")
print(f"samples: {BUDGET.num_samples:,} "
      f"({100 * BUDGET.num_samples / 250_000:.3g} % of the paper's 250,000), "
      f"{BUDGET.num_samples * BUDGET.steps:,} sample-steps through ResNet-34")
if DEVICE.type != "cuda" and SIZE != "smoke":
    print("WARNING: no GPU. At this size the ResNets are far too slow on a CPU; "
          "on Colab, pick a GPU runtime.")


def run_id(*settings):
    """A short name for a set of settings: changed settings get a new directory in runs/."""
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:10]

# %% [markdown]
# ```{warning}
# **At `CAKE_MINI_SIZE=smoke`, this chapter does not use CIFAR-10.** It runs on
# `cake_mini.data.stand_in("cifar10", ...)`: random images with the shape and the ten
# classes of CIFAR-10, made of a fixed pattern per class plus noise. That is how CI builds
# this book, on a CPU, in seconds: it checks that every line of the pipeline runs, and
# nothing else. Every number and picture on a smoke-size page is about that stand-in data
# and a teacher trained for one step. At `default` and `paper` size the chapter loads the
# real CIFAR-10 (torchvision downloads it, about 170 MB, on first use).
# ```

# %% [markdown]
# ## Data
#
# `load_dataset("cifar10", split)` returns the whole split as one tensor, normalised per
# channel, so training can keep it on the GPU: 45,000 training images (the other 5,000 of
# the official training set are the `val` split) and the 10,000 test images.

# %%
if STAND_IN:
    print("=" * 78)
    print("  SMOKE SIZE: RANDOM STAND-IN DATA, NOT CIFAR-10.")
    print("  Numbers and pictures below say nothing about CAKE on CIFAR-10.")
    print("=" * 78)
    train = stand_in("cifar10", "train", n=64, seed=SEED)
    test = stand_in("cifar10", "test", n=64, seed=SEED)
else:
    train = load_dataset("cifar10", "train")  # downloads on first use
    test = load_dataset("cifar10", "test")
print(f"train {tuple(train.tensors[0].shape)}, test {tuple(test.tensors[0].shape)}"
      + (" (stand-in data)" if STAND_IN else " (CIFAR-10)"))
x_show, y_show = train.tensors[0][:400], train.tensors[1][:400]
image_grid(denormalize(x_show, "cifar10"), y_show, nrow=3, class_names=CLASSES,
           title=("stand-in training images (NOT CIFAR-10)" if STAND_IN
                  else "CIFAR-10 training images"))
plt.show()

# %% [markdown]
# ## The teacher: train once, or load
#
# Everything this run writes goes into one directory, `RUN_DIR`, whose name ends in a
# short hash of the teacher's settings. The teacher is trained with the experiment's
# recipe (SGD with a one-cycle schedule, peak learning rate 0.1, random flips and shifts
# of up to 4 pixels; printed below) and saved there as `teacher.pt`. Training itself
# saves a checkpoint after every epoch into `RUN_DIR/teacher-training/`; rerunning the
# cell after an interruption continues from the last finished epoch.
#
# If you already have a trained ResNet-34 for CIFAR-10 (with this package's
# `make_model("resnet34", in_channels=3)` layout, for example the `teacher.pt` that
# `cake-mini run cifar10-resnet` writes), set `TEACHER_CHECKPOINT` to its path and the
# training is skipped.

# %%
TEACHER_CHECKPOINT = None  # e.g. "runs/c10/teacher.pt"
DATA = "stand-in" if STAND_IN else "cifar10"
TEACHER_ID = run_id(BUDGET.teacher_epochs, EXP.teacher_recipe)
RUN_DIR = RUNS / f"book-c10-{DATA}-{SIZE}-s{SEED}-{TEACHER_ID}"
RUN_DIR.mkdir(parents=True, exist_ok=True)
print("run directory:", RUN_DIR)

torch.manual_seed(SEED)
teacher = make_model("resnet34", num_classes=10, in_channels=3).to(DEVICE)
teacher_file = Path(TEACHER_CHECKPOINT) if TEACHER_CHECKPOINT else RUN_DIR / "teacher.pt"
t0 = time.perf_counter()
if teacher_file.exists():
    teacher.load_state_dict(safe_load(teacher_file))
    print(f"loaded the teacher from {teacher_file}")
else:
    recipe = DistillConfig(epochs=BUDGET.teacher_epochs, seed=SEED, **EXP.teacher_recipe)
    print(recipe)
    train_classifier(teacher, train, recipe, device=DEVICE, progress=PROGRESS,
                     checkpoint_dir=RUN_DIR / "teacher-training")
    atomic_save(teacher.state_dict(), teacher_file)
    print(f"trained the teacher for {recipe.epochs} epoch(s) in "
          f"{time.perf_counter() - t0:.0f} s; "
          f"saved to {teacher_file}")
teacher.eval()
teacher_acc = evaluate(teacher, test, device=DEVICE)
print(f"ResNet-34 teacher ({count_parameters(teacher):,} parameters): "
      f"test accuracy {teacher_acc:.2%} "
      f"({'stand-in data, ' if STAND_IN else ''}{RUN})")
assert 0.0 <= teacher_acc <= 1.0

# %% [markdown]
# ## Synthesis, resumable
#
# `SynthesisConfig.preset("cifar10")` is the paper's setting: 500 mini-batches of 500
# samples, 256 steps each, the step size falling from 0.1 over four decades, and the
# default loss weights ($w_\text{cls}=10^3$, $w_\text{contr}=10$, $w_\text{TV}=10^5$).
#
# With `checkpoint_dir=`, every finished group of mini-batches is written as a shard
# (atomically: a shard is either complete or absent) and listed with its checksum in a
# `manifest.json` that also records the config and a fingerprint of the teacher. Calling
# `synthesize` again with the same arguments loads the finished shards and computes only
# the missing ones. A directory that holds a *different* run (another config or teacher)
# is refused with an error that names the difference, so runs are never mixed. Here the
# directory's name carries a hash of the teacher's fingerprint and the config, so changed
# settings simply start a new directory.

# %%
config = SynthesisConfig.preset(
    "cifar10", num_samples=BUDGET.num_samples, steps=BUDGET.steps, seed=SEED,
    **({"batch_size": 10, "parallel_batches": 1} if SIZE == "smoke" else {}),
)
print(config)
if DEVICE.type == "cuda":
    torch.cuda.reset_peak_memory_stats(DEVICE)
SYNTHESIS_DIR = RUN_DIR / f"synthesis-{run_id(fingerprint(teacher), config)}"
t0 = time.perf_counter()
synthetic = synthesize(teacher, (3, 32, 32), 10, config, device=DEVICE, progress=PROGRESS,
                       checkpoint_dir=SYNTHESIS_DIR)
seconds = time.perf_counter() - t0
print(f"{len(synthetic):,} samples x {config.steps} steps: {seconds:.1f} s in this call "
      f"({RUN})")
if DEVICE.type == "cuda":
    print(f"peak GPU memory {torch.cuda.max_memory_allocated(DEVICE) / 2**30:.1f} GiB "
          f"with parallel_batches={config.parallel_batches}, batch_size={config.batch_size}")
assert len(synthetic) == BUDGET.num_samples and torch.isfinite(synthetic.x).all()
files = sorted(p.name for p in SYNTHESIS_DIR.iterdir())
print(f"{len(files)} files in {SYNTHESIS_DIR}: {', '.join(files[:4])}, ...")

# %% [markdown]
# Run the same call again: every shard is on disk now, so it only reads them, and the
# samples are the same to the last bit. After a Colab disconnect, this is what rerunning the
# cell does with the shards that were finished before.

# %%
t0 = time.perf_counter()
again = synthesize(teacher, (3, 32, 32), 10, config, device=DEVICE, progress=False,
                   checkpoint_dir=SYNTHESIS_DIR)
print(f"second call: {time.perf_counter() - t0:.2f} s, "
      f"all {config.num_batches} mini-batches read from disk")
assert torch.equal(again.x, synthetic.x)
assert torch.equal(again.soft_labels, synthetic.soft_labels)

order = torch.randperm(len(synthetic), generator=torch.Generator().manual_seed(SEED))
image_grid(synthetic.x[order], synthetic.labels[order], nrow=4, class_names=CLASSES,
           title=f"CAKE samples from ResNet-34 ({'stand-in, ' if STAND_IN else ''}{RUN})")
plt.show()

# %% [markdown]
# The synthetic images are shown stretched per image, with their three channels as
# colours, not denormalised: they have no fixed range. At `default` size and above, look
# for colour blobs and textures that differ between columns. Nothing here needs to look
# like a photograph for the student to learn from it.

# %% [markdown]
# ## Distillation, resumable
#
# The student is a ResNet-18 trained on the synthetic samples with the teacher's softmax
# as targets, with the experiment's recipe (printed below; SGD with a one-cycle schedule).
# With `checkpoint_dir=`, `distill` saves the model, optimiser, schedule and random state
# after every epoch, and continues after the last finished epoch when called again. The student is created in the same
# cell with a fixed seed, so that a rerun starts from the same initialisation, which the
# checkpoint directory checks.

# %%
torch.manual_seed(SEED + 1)
student = make_model("resnet18", num_classes=10, in_channels=3).to(DEVICE)
recipe = DistillConfig(epochs=BUDGET.student_epochs, seed=SEED, **EXP.student_recipe)
print(recipe)
t0 = time.perf_counter()
result = distill(student, synthetic, recipe, device=DEVICE, progress=PROGRESS,
                 checkpoint_dir=RUN_DIR / f"distill-{run_id(SYNTHESIS_DIR.name, recipe)}")
student_acc = evaluate(student, test, device=DEVICE)
atomic_save(student.state_dict(), RUN_DIR / "student.pt")
print(f"ResNet-18 student ({count_parameters(student):,} parameters): "
      f"test accuracy {student_acc:.2%}, "
      f"data-free; teacher {teacher_acc:.2%}. {time.perf_counter() - t0:.0f} s in this call "
      f"({'stand-in data, ' if STAND_IN else ''}{RUN})")
assert 0.0 <= student_acc <= 1.0 and len(result.history) == recipe.epochs

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot([r["epoch"] for r in result.history], [r["train_loss"] for r in result.history], "o-")
ax.set(xlabel="epoch", ylabel="training loss (soft cross-entropy)",
       title=f"Distilling ResNet-18 ({'stand-in data, ' if STAND_IN else ''}{RUN})")
fig.tight_layout()
plt.show()

# %% [markdown]
# Compare the printed accuracies with the paper's row:
#
# | | teacher ResNet-34 | student ResNet-18 |
# |---|---|---|
# | CAKE (paper) | 91.8 ± 0.11 | 78.9 ± 2.59 |
# | KD with the training data (paper) | 95.6 | 94.3 |
#
# A `default`-size run synthesises fewer samples than the paper (the share is printed in
# the setup cell) and trains the teacher for fewer epochs, so expect it below the paper's
# row; a `paper`-size run is the comparable one. One seed is one draw from a spread of
# several points.

# %% [markdown]
# ## Long runs on Colab
#
# **Keep the run directory where a disconnect cannot delete it.** Rerunning a cell
# continues from the run directory, but Colab's local disk is wiped when the runtime is
# recycled (after an idle timeout or at the session's time limit). Put `RUNS` on Google
# Drive before running the cells above:
#
# ```python
# from google.colab import drive
# drive.mount("/content/drive")
# RUNS = Path("/content/drive/MyDrive/cake_mini_runs")
# ```
#
# **Or use the command line.** The same experiment, with the same budgets, writes the same
# kinds of files (`teacher.pt`, `synthesis/`, `distill/`, `student.pt`, `results.json`)
# into the directory you name.
# Interrupt it at any point and run the same command again to continue:
#
# ```bash
# cake-mini run cifar10-resnet --size paper --out runs/c10
# ```
#
# In a Colab cell, prefix it with `!` and point `--out` at Drive.
#
# **Mixed precision.** With `precision="auto"`, the default of both `SynthesisConfig` and
# `DistillConfig`, forward passes on CUDA run under bf16 autocast, and fp32 on a CPU.
# GPUs older than the Ampere generation (compute capability below 8.0, for example
# Colab's T4) have no bf16 tensor cores. There bf16 may not pay off; compare a few
# mini-batches with `precision="fp32"` before a long run. The next cell prints what this
# machine has.
#
# **Memory.** `parallel_batches` mini-batches are optimised together as one large batch;
# the result is the same up to float rounding, only speed and memory change. The CIFAR-10
# preset uses `parallel_batches=2`, that is 1,000 samples through ResNet-34 at once, with
# the activations kept for the input gradient. If that runs out of memory (a 16 GB T4 is
# the card to worry about), pass `parallel_batches=1` to the preset: half the memory, the
# same samples. Changing it does change the shard layout, so use a new run directory.
#
# **Several GPUs, or several machines.** Launch the same command with `torchrun`; nothing
# else changes. Synthesis is embarrassingly parallel: rank `r` of `N` optimises every
# `N`-th group of mini-batches and writes those shards into the shared run directory (each
# rank keeps its own `manifest.rank<r>.json`), then every rank reads the others' shards.
# The samples are the ones a one-process run with the same seed makes (bit for bit on CPU,
# a test runs two gloo processes against one), and a run interrupted with 8 processes can
# be finished with 1. Teacher training and distillation use `DistributedDataParallel`, each
# rank taking a slice of every global batch, so `batch_size` and `lr` keep their meaning.
#
# ```bash
# torchrun --standalone --nproc_per_node=8 -m cake_mini run cifar10-resnet --size paper --out runs/c10
# # two machines with 8 GPUs each; --out must be on a file system both see
# torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \
#     -m cake_mini run cifar10-resnet --size paper --out /shared/runs/c10
# ```
#
# In your own script, call `cake_mini.distributed.init_from_env()` once at the start and
# pass a `checkpoint_dir` to `synthesize`. ResNet-18's BatchNorm then normalises over each
# rank's slice of the batch; that is standard data-parallel training, not a bit-identical
# copy of one process.

# %%
if DEVICE.type == "cuda":
    capability = torch.cuda.get_device_capability(DEVICE)
    print(f"{HARDWARE}: compute capability {capability[0]}.{capability[1]}, "
          f"{torch.cuda.get_device_properties(DEVICE).total_memory / 2**30:.0f} GiB; "
          + ("bf16 native" if capability >= (8, 0)
             else "no bf16 tensor cores (compare with precision='fp32')"))
else:
    print(f"{HARDWARE}: no CUDA device, so precision='auto' means fp32 here")

# %% [markdown]
# ## Summary
#
# - The CIFAR-10 pipeline is the same three calls as on Fashion-MNIST, with a ResNet-34
#   teacher, the `cifar10` preset and a ResNet-18 student.
# - `checkpoint_dir=` makes teacher training, synthesis and distillation resumable: rerun
#   the cell (or the `cake-mini run` command) and finished work is reused, checked by
#   checksum, never mixed with a different run.
# - On Colab, keep the run directory on Drive, check whether your GPU has native bf16, and
#   lower `parallel_batches` if memory runs out.
# - On several GPUs, prefix the command with `torchrun --nproc_per_node=N`; the samples do
#   not depend on `N`.
#
# ## Exercises
#
# 1. Interrupt the synthesis cell halfway (the stop button), then run it again. How many
#    mini-batches does the progress bar start from?
# 2. Distil the student from only the samples of the middle step sizes
#    (`synthetic.filter_step_size(1e-3, 1e-2)`, in a new run directory). Better or worse?
# 3. Compare one mini-batch of synthesis with `precision="bf16"` and `"fp32"` on your GPU:
#    time, memory, and the samples' difference.
# 4. ADI's 93.3 % uses the teacher's batch-norm statistics. Which line of the synthesis
#    loss would you add to use them too, and why does CAKE not?
