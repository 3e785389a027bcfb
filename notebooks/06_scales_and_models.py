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
# # CAKE across scales and across models
#
# CAKE needs nothing from the teacher but gradients with respect to its input: no batch
# normalisation statistics, no generator, no particular layer. So in principle any
# differentiable teacher can be copied into any student. The paper's poster shows two
# figures about this: **across scales** (teachers and students of different widths) and
# **across models** (MLP, CNN, ResNet and ViT teachers and students, in every
# combination). It reports that student accuracy stays high across sizes, and is highest
# when teacher and student are of the same type.
#
# What you will build: the two grids, teacher type × student type, where every cell is one
# complete run (train the teacher on real data, synthesise from it, distil a student from
# the synthetic samples only, test the student on real data), and a heatmap of each.
#
# The data are scikit-learn's handwritten digits, which come with the library, so this
# chapter runs anywhere without a download. They are 8×8 images; we upsample them to
# 32×32, the input size that LeNet-5, ResNet and the ViT patch grid of the paper expect.

# %% [markdown]
# ## Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

try:
    import cake_mini
except ImportError:  # on Colab, or anywhere the package is not installed yet
    # %pip install -q cake_mini scikit-learn
    import cake_mini

from cake_mini import (DistillConfig, NonFiniteLossError, SynthesisConfig, distill, evaluate,
                       synthesize, train_classifier)
from cake_mini.data import load_dataset
from cake_mini.models import count_parameters, make_model
from cake_mini.sizes import get_size, pick
from cake_mini.viz import image_grid

SIZE = get_size()
SEEDS = pick(smoke=[0], default=[0], paper=[0, 1, 2])
torch.manual_seed(SEEDS[0])
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HARDWARE = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
            else f"CPU, {torch.get_num_threads()} thread(s)")
RUN = f"size={SIZE}, seeds={SEEDS}, {HARDWARE}"  # printed next to every number

TEACHER_EPOCHS = pick(smoke=2, default=30, paper=30)
NUM_SAMPLES = pick(smoke=200, default=2_000, paper=25_600)
STEPS = pick(smoke=20, default=100, paper=500)
STUDENT_EPOCHS = pick(smoke=15, default=30, paper=30)
print(f"cake_mini {cake_mini.__version__}, torch {torch.__version__}; {RUN}")
print(f"teacher epochs {TEACHER_EPOCHS}, {NUM_SAMPLES} samples x {STEPS} steps, "
      f"student epochs {STUDENT_EPOCHS}")

# %% [markdown]
# ```{warning}
# At `CAKE_MINI_SIZE=smoke`, how CI builds this book, each grid is cut to 2×2 cells and
# every run is tiny: two epochs for each teacher, a few hundred barely optimised samples,
# a short training for each student. **The smoke-size heatmaps on this page are not
# meaningful**; they only show that the code runs. At `default` size (the full grids; use a
# GPU, the ResNet and ViT cells are slow on a CPU) the numbers mean something, for one
# seed. `paper` size runs three seeds with the sample budget of the reference
# implementation's defaults.
# ```

# %% [markdown]
# ## Digits at 32×32
#
# `load_dataset("digits")` gives the 1,797 images of scikit-learn's digits as 1×8×8
# tensors in $[-1, 1]$, split into train, validation and test with a fixed seed. We use
# train and validation together for the teachers, and upsample bilinearly to 32×32.
# Padding to 32×32 would also fit the models, but would leave a tiny digit in a large empty
# frame; upsampling keeps the digit filling the image, as in MNIST.

# %%
def digits32(split):
    x, y = load_dataset("digits", split).tensors
    return TensorDataset(F.interpolate(x, size=32, mode="bilinear", align_corners=False), y)


train, test = digits32("full-train"), digits32("test")
INPUT_SHAPE, NUM_CLASSES = (1, 32, 32), 10
print(f"train {tuple(train.tensors[0].shape)}, test {tuple(test.tensors[0].shape)}, "
      f"values in [{train.tensors[0].min():.1f}, {train.tensors[0].max():.1f}]")
image_grid(train.tensors[0][:300], train.tensors[1][:300], nrow=2,
           title="digits, upsampled to 32x32")
plt.show()

# %% [markdown]
# ## One cell of the grid
#
# Every cell runs the same pipeline. Teachers are trained with the recipe used for LeNet-5
# in this book (SGD, one-cycle schedule, random shifts). The synthetic set depends only on
# the teacher, so each teacher synthesises once, and all students of its row learn from
# the same samples; only the students differ along a row. For reference, each student
# architecture is also trained on the real data with the teacher's recipe; where it is
# also a teacher, that model is reused.
#
# The synthesis settings are the paper's weights for MNIST-type data
# ($w_\text{cls}=10^3$, $w_\text{contr}=10^{-3}$), except $w_\text{TV}$: with the paper's
# $10^7$ a LeNet-5 student learned less from a LeNet-5 teacher in a small trial run on this
# data (two seeds, one budget), and $10^6$ did better there. Treat it as a setting to
# question; an exercise below asks you to vary it. Mini-batches of 100 give several step
# sizes even at small budgets.

# %%
TEACHER_RECIPE = DistillConfig(epochs=TEACHER_EPOCHS, lr=0.1, batch_size=64,
                               augment="shift", shift_pixels=2)
STUDENT_RECIPE = DistillConfig(epochs=STUDENT_EPOCHS, lr=0.1, batch_size=128)
SYNTHESIS = SynthesisConfig(num_samples=NUM_SAMPLES, steps=STEPS, batch_size=100,
                            w_cls=1e3, w_contr=1e-3, w_tv=1e6)


def build(spec, seed):
    """A fresh model from (name, options); the seed fixes its initialisation."""
    name, options = spec
    torch.manual_seed(seed)
    model = make_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=32, **options)
    return model.to(DEVICE)


# (spec, seed) -> model trained on the real data; a teacher is also its own "with data" student
TRAINED = {}


def trained_on_data(spec, seed):
    key = (spec[0], tuple(sorted(spec[1].items())), seed)
    if key not in TRAINED:
        model = build(spec, seed)
        train_classifier(model, train, TEACHER_RECIPE.replace(seed=seed), device=DEVICE,
                         progress=False)
        TRAINED[key] = model.eval()
    return TRAINED[key]


def cake_grid(teachers, students, seeds=SEEDS):
    """Student test accuracy per (teacher, student, seed): array (T, S, seeds); NaN = diverged.

    Also returns the teachers' test accuracy (T, len(seeds)) and the accuracy of each student
    architecture trained on the real data instead (S, len(seeds)), its ceiling.
    """
    acc = np.full((len(teachers), len(students), len(seeds)), np.nan)
    teacher_acc = np.full((len(teachers), len(seeds)), np.nan)
    with_data_acc = np.full((len(students), len(seeds)), np.nan)
    for k, seed in enumerate(seeds):
        for j, spec in enumerate(students.values()):  # ceiling: the student trained on data
            with_data_acc[j, k] = evaluate(trained_on_data(spec, seed), test, device=DEVICE)
        for i, (t_label, t_spec) in enumerate(teachers.items()):
            t0 = time.perf_counter()
            teacher = trained_on_data(t_spec, seed)
            teacher_acc[i, k] = evaluate(teacher, test, device=DEVICE)
            try:  # from here on, no real data until the test
                synthetic = synthesize(teacher, INPUT_SHAPE, NUM_CLASSES,
                                       SYNTHESIS.replace(seed=seed), device=DEVICE,
                                       progress=False)
            except NonFiniteLossError as err:
                print(f"teacher {t_label}, seed {seed}: synthesis diverged, row left empty "
                      f"({err})")
                continue
            for j, s_spec in enumerate(students.values()):
                student = build(s_spec, seed + 1)
                distill(student, synthetic, STUDENT_RECIPE.replace(seed=seed), device=DEVICE,
                        progress=False)
                acc[i, j, k] = evaluate(student, test, device=DEVICE)
            cells = ", ".join(f"{s} {a:.1%}" for s, a in zip(students, acc[i, :, k]))
            print(f"seed {seed}, teacher {t_label} ({teacher_acc[i, k]:.1%}): "
                  f"students {cells} [{time.perf_counter() - t0:.0f} s; {RUN}]")
    return acc, teacher_acc, with_data_acc


def plot_grid(acc, teacher_acc, with_data_acc, teachers, students, title):
    """Heatmap of mean student accuracy; the first row: each student trained on the data."""
    def mean_std(a, axis):
        count = np.isfinite(a).sum(axis)
        mean = np.where(count > 0, np.nansum(a, axis) / np.maximum(count, 1), np.nan)
        squares = np.nansum((a - np.expand_dims(mean, axis)) ** 2, axis)
        spread = np.sqrt(np.where(count > 1, squares / np.maximum(count - 1, 1), np.nan))
        return 100 * mean, 100 * spread

    cells, spread = mean_std(acc, 2)
    ceiling, ceiling_spread = mean_std(with_data_acc, 1)
    t_mean, _ = mean_std(teacher_acc, 1)
    values = np.vstack([ceiling[None], cells])
    spreads = np.vstack([ceiling_spread[None], spread])
    figsize = (1.5 * len(students) + 2.5, 0.9 * (len(teachers) + 1) + 1.5)
    fig, ax = plt.subplots(figsize=figsize)
    image = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    ax.axhline(0.5, color="w", lw=3)
    for (r, c), v in np.ndenumerate(values):
        if np.isnan(v):
            text = "diverged"
        else:
            spread_text = "" if np.isnan(spreads[r, c]) else f"\n± {spreads[r, c]:.0f}"
            text = f"{v:.0f}{spread_text}"
        ax.text(c, r, text, ha="center", va="center", fontsize=9, color="k" if v > 60 else "w")
    ax.set_xticks(range(len(students)), list(students), rotation=20, ha="right")
    row_labels = [f"{t}\n(teacher {a:.0f} %)" for t, a in zip(teachers, t_mean)]
    ax.set_yticks(range(len(teachers) + 1), ["trained on the data"] + row_labels)
    ax.set(xlabel="student", ylabel="teacher (synthetic samples from it)",
           title=f"{title}\n({RUN})")
    fig.colorbar(image, ax=ax, label="student test accuracy (%)", shrink=0.8)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Across scales
#
# LeNet-5 at four widths: `make_model("lenet5", width=w)` multiplies the number of
# channels and units of every layer by `w`. Width 0.5 is the paper's LeNet-5-Half. Each
# teacher width is copied into each student width, so the diagonal copies a model into one
# of its own size, the upper right into a larger one and the lower left into a smaller one.

# %%
WIDTHS = pick(smoke=[0.5, 1.0], default=[0.25, 0.5, 1.0, 2.0], paper=[0.25, 0.5, 1.0, 2.0])
scales = {f"LeNet-5 x{w:g}": ("lenet5", {"width": w}) for w in WIDTHS}
for label, spec in scales.items():
    print(f"{label}: {count_parameters(build(spec, 0)):,} parameters")
t0 = time.perf_counter()
scale_acc, scale_teacher_acc, scale_with_data = cake_grid(scales, scales)
print(f"grid of {len(scales)}x{len(scales)} in {time.perf_counter() - t0:.0f} s ({RUN})")
assert scale_acc.shape == (len(scales), len(scales), len(SEEDS))
assert np.all((scale_acc >= 0) & (scale_acc <= 1) | np.isnan(scale_acc))
plot_grid(scale_acc, scale_teacher_acc, scale_with_data, scales, scales,
          "CAKE across scales (digits 32x32)")
plt.show()

# %% [markdown]
# How to read the heatmap: the top row, above the white line, is each student architecture
# trained on the real data, the best it can do. Each row below is one teacher (its own test
# accuracy in the label), and each cell the student trained only on that teacher's
# synthetic samples. Compare a cell with the top row of its column (how much of the
# student's capacity the synthetic data unlocks) and with the teacher's accuracy in the
# row label (how much of the teacher was copied). The poster's claim is that the cells
# stay close to those references across the whole grid; see whether a row or a column
# falls off, for example the narrowest teacher or the narrowest student.

# %% [markdown]
# ## Across models
#
# Four model types, each with the larger model as teacher and a smaller one of the same
# type as student, as in the paper's pairs:
#
# | type | teacher | student |
# |---|---|---|
# | MLP | 3 hidden layers of 256 | 2 hidden layers of 128 |
# | CNN | LeNet-5 | LeNet-5-Half |
# | ResNet | ResNet-34 | ResNet-18 |
# | ViT | ViT-8 (8 blocks) | ViT-4 (4 blocks) |
#
# The MLP sees the image as a flat vector of 1,024 numbers; the ResNets use batch
# normalisation, which CAKE leaves alone (the teacher stays in eval mode); the ViTs cut the
# image into 4×4 patches. ResNet and ViT teachers take most of the time: on a CPU, expect
# this grid to be slow beyond smoke size.

# %%
TYPES = {
    "MLP": (("mlp", {"hidden": 256, "depth": 3}), ("mlp", {"hidden": 128, "depth": 2})),
    "CNN": (("lenet5", {}), ("lenet5-half", {})),
    "ResNet": (("resnet34", {}), ("resnet18", {})),
    "ViT": (("vit8", {}), ("vit4", {})),
}
TYPE_NAMES = pick(smoke=["MLP", "CNN"], default=list(TYPES), paper=list(TYPES))
type_teachers = {name: TYPES[name][0] for name in TYPE_NAMES}
type_students = {name: TYPES[name][1] for name in TYPE_NAMES}
t0 = time.perf_counter()
model_acc, model_teacher_acc, model_with_data = cake_grid(type_teachers, type_students)
print(f"grid of {len(TYPE_NAMES)}x{len(TYPE_NAMES)} in {time.perf_counter() - t0:.0f} s "
      f"({RUN})")
assert model_acc.shape == (len(TYPE_NAMES), len(TYPE_NAMES), len(SEEDS))
assert np.all((model_acc >= 0) & (model_acc <= 1) | np.isnan(model_acc))
plot_grid(model_acc, model_teacher_acc, model_with_data, type_teachers, type_students,
          "CAKE across models (digits 32x32)")
plt.show()

# %% [markdown]
# The diagonal holds matched types, the off-diagonal cells transfers across types. The
# poster reports that transfer works across types and works best when the types match;
# check both in your grid: is each diagonal cell the best of its row? Then look at the
# off-diagonal cells of the strongest teacher: they tell whether its samples carry
# knowledge that a student of a different architecture can use, or only features that an
# architecture like the teacher's picks up. Keep in mind that the teachers differ in
# accuracy (row labels): a weaker teacher caps its whole row. With a single seed, as at
# `default` size, differences of a few points are within the noise of one run.

# %% [markdown]
# ## Summary
#
# - CAKE only needs input gradients, so the same code copies MLPs, CNNs, ResNets and
#   ViTs, into students of any other type.
# - A grid of complete runs, teacher × student, with the students' with-data accuracy and
#   the teachers' accuracy as references, shows where the transfer works and where it
#   falls off.
# - The digits data set is small enough to run the full grids in minutes on a GPU, and
#   comes with scikit-learn, so no download is needed.
#
# ## Exercises
#
# 1. Run at `default` size on a GPU. Which cells of each grid fall furthest below the top
#    row of their column?
# 2. Change `w_tv` in `SYNTHESIS` to the paper's $10^7$ and to $10^5$. Which model types
#    react most?
# 3. Add a row and a column for the small generic CNN, `("cnn", {"width": 32})` and
#    `("cnn", {"width": 16})`, which works on the original 8×8 images too.
# 4. Run three seeds (`SEEDS = [0, 1, 2]`). Which differences between cells survive?
# 5. Replace the digits by Fashion-MNIST (`load_dataset("fashion-mnist", ...)`, already
#    32×32) and rerun the scales grid. Does the pattern hold on a harder data set?
