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
# # What the samples look like, and what they reveal
#
# CAKE is meant for the case where the training data cannot be shared: it is private,
# licensed, or simply gone. That raises a question the paper's poster states and leaves
# open: the synthetic samples "capture decision boundaries without resembling real data",
# but how far from the real data are they, and does "not resembling" mean "private"?
#
# What you will build:
#
# 1. **Galleries.** Synthetic samples of a Fashion-MNIST LeNet-5 teacher, class by class,
#    next to real training images.
# 2. **Samples by step size.** The same classes from early mini-batches (large steps) and
#    late ones (small steps).
# 3. **Nearest real neighbours.** For every synthetic sample, the closest image in the
#    training set, in two metrics, against three yardsticks: how far a real *test* image is
#    from its nearest training image, how far two random training images are from each
#    other, and how far plain noise is from the training set. Then the closest pairs, side
#    by side.
# 4. **What this does and does not say about privacy.**

# %% [markdown]
# ## Setup

# %%
import hashlib
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import TensorDataset

try:
    import cake_mini
except ImportError:  # on Colab, or anywhere the package is not installed yet
    # %pip install -q cake_mini
    import cake_mini

from cake_mini import DistillConfig, SynthesisConfig, evaluate, synthesize, train_classifier
from cake_mini.checkpoint import atomic_save, safe_load
from cake_mini.data import load_dataset
from cake_mini.experiments import EXPERIMENTS
from cake_mini.models import make_model
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

NUM_SAMPLES = pick(smoke=500, default=5_000, paper=25_600)  # synthetic samples to look at
STEPS = pick(smoke=20, default=256, paper=256)
BATCH_SIZE = pick(smoke=100, default=500, paper=500)
NUM_QUERIES = pick(smoke=200, default=2_000, paper=5_000)  # samples whose neighbours we search

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
print(f"cake_mini {cake_mini.__version__}, torch {torch.__version__}; {RUN}")


def run_id(*settings):
    """A short name for a set of settings: changed settings get a new directory in runs/."""
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:10]

# %% [markdown]
# ```{note}
# At `CAKE_MINI_SIZE=smoke` (how CI builds this book) the teacher is trained for one epoch
# on part of the data, and the samples take only a few steps. The pictures and distances
# then describe a weak teacher and barely optimised samples. Run the chapter at `default`
# size before drawing any conclusion from it.
# ```

# %% [markdown]
# ## The teacher and its samples
#
# The teacher is the LeNet-5 of the Fashion-MNIST chapter, with the same recipe and
# budget. If that chapter already ran at this size, its teacher is loaded from `runs/`.
# Synthesis uses the paper's Fashion-MNIST preset with a smaller number of samples.

# %%
train = load_dataset("fashion-mnist", "train")
test = load_dataset("fashion-mnist", "test")

EXP = EXPERIMENTS["fashion-mnist"]
torch.manual_seed(SEED)
teacher = make_model("lenet5", num_classes=10).to(DEVICE)
TEACHER_EPOCHS = EXP.budgets[SIZE].teacher_epochs
TEACHER_SUBSET = pick(smoke=10_000, default=None, paper=None)
# the same name as in the Fashion-MNIST chapter, for the same settings
teacher_id = run_id(TEACHER_EPOCHS, TEACHER_SUBSET, EXP.teacher_recipe)
teacher_file = RUNS / f"book-fmnist-teacher-{SIZE}-s{SEED}-{teacher_id}.pt"
if teacher_file.exists():
    teacher.load_state_dict(safe_load(teacher_file))
    print(f"loaded the teacher from {teacher_file}")
else:
    teacher_train = train
    if TEACHER_SUBSET is not None:
        teacher_train = TensorDataset(*(t[:TEACHER_SUBSET] for t in train.tensors))
    recipe = DistillConfig(epochs=TEACHER_EPOCHS, seed=SEED, **EXP.teacher_recipe)
    train_classifier(teacher, teacher_train, recipe, device=DEVICE, progress=PROGRESS)
    atomic_save(teacher.state_dict(), teacher_file)
    print(f"trained the teacher on {len(teacher_train)} images for {recipe.epochs} epoch(s); "
          f"saved to {teacher_file}")
teacher.eval()
teacher_acc = evaluate(teacher, test, device=DEVICE)
print(f"LeNet-5 teacher: test accuracy {teacher_acc:.2%} ({RUN})")

config = SynthesisConfig.preset("fashion-mnist", num_samples=NUM_SAMPLES, steps=STEPS,
                                batch_size=BATCH_SIZE, seed=SEED)
t0 = time.perf_counter()
synthetic = synthesize(teacher, (1, 32, 32), 10, config, device=DEVICE, progress=PROGRESS)
print(f"{len(synthetic)} samples in {config.num_batches} mini-batches x {config.steps} steps, "
      f"{time.perf_counter() - t0:.1f} s ({RUN})")
assert torch.isfinite(synthetic.x).all()

# %% [markdown]
# ## Galleries
#
# Top: synthetic samples, one column per class they were pushed towards, drawn at random
# from all mini-batches. Bottom: real training images of the same classes. Both are
# stretched per image to the full grey range.

# %%
order = torch.randperm(len(synthetic), generator=torch.Generator().manual_seed(SEED))
image_grid(synthetic.x[order], synthetic.labels[order], nrow=5, class_names=CLASSES,
           title=f"synthetic samples ({RUN})")
plt.show()
x_train, y_train = train.tensors
image_grid(x_train[:2000], y_train[:2000], nrow=3, class_names=CLASSES,
           title="real training images")
plt.show()

# %% [markdown]
# Whether or not the two grids look related to you, the eye is a poor judge here: it
# compares a random handful of images, in a 1,024-dimensional space, by impressions. For
# privacy the question is about the *most* similar samples, not typical ones. The rest of
# this chapter answers it with numbers.

# %% [markdown]
# ## Samples by step size
#
# Each row is one mini-batch's step size, from the first mini-batch (largest step) at
# the top to the last (smallest) at the bottom; each column is a class. The step size of a
# mini-batch sets how far its samples travel from the noise they start from.

# %%
etas = torch.unique(synthetic.step_size).flip(0)  # largest first
rows = etas[torch.linspace(0, len(etas) - 1, min(5, len(etas))).round().long().unique()]
picked, row_labels = [], []
for eta in rows:
    in_batch = synthetic.step_size == eta
    for c in range(10):
        idx = torch.nonzero(in_batch & (synthetic.labels == c)).flatten()
        picked.append(synthetic.x[idx[0]] if len(idx) else torch.zeros_like(synthetic.x[0]))
    row_labels.append(f"{eta.item():.0e}")
fig = image_grid(torch.stack(picked), nrow=10, per_class=False,
                 title=f"columns: {', '.join(CLASSES)}\n"
                       f"rows: step size, large to small ({RUN})")
for r, label in enumerate(row_labels):
    ax = fig.axes[r * 10]
    ax.text(-0.15, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=8)
plt.show()
for eta in rows:
    sel = synthetic.step_size == eta
    agree = (synthetic.soft_labels[sel].argmax(1) == synthetic.labels[sel]).float().mean()
    print(f"step size {eta.item():.1e}: mean |x| {synthetic.x[sel].abs().mean().item():.2f}, "
          f"teacher agrees with the intended class for {agree.item():.0%}")
print(f"real training images: mean |x| {x_train.abs().mean().item():.2f} ({RUN})")

# %% [markdown]
# Read the grid together with the printout. When the first rows' mean |x| is many times
# that of real images, large steps have carried those samples far outside the range of
# real data. The last rows have moved least from their start: noise, smoothed by the total
# variation term. The teacher's agreement with the intended class says where a row sits:
# near 100 % means deep inside the class regions, near 10 % (chance) means the samples
# have not yet reached their class, and values in between mean samples near the decision
# boundaries, which is where CAKE wants them.

# %% [markdown]
# ## Nearest real neighbours
#
# For each of a few thousand synthetic samples (a few hundred at smoke size) we search the
# whole training set for its nearest image in two ways, both in the normalised pixel
# space the teacher sees:
#
# - **L2 distance.** Sensitive to magnitude: a sample with large values is far from
#   everything.
# - **Cosine similarity** of the flattened images. Blind to magnitude. Note that every
#   real Fashion-MNIST image has a large constant background (value −1 after
#   normalisation), so two real images are already similar in this metric for that reason
#   alone.
#
# The same search for three yardsticks tells what "near" means:
#
# - **test → train**: a real image the teacher never saw, and its nearest training image.
#   This is how close a *new* image of the same distribution comes, without copying.
# - **random train pairs**: two training images picked at random; a typical distance.
# - **noise → train**: standard normal noise, the synthesis start, and its nearest
#   training image; what "knows nothing about the data" looks like.

# %%
def nearest(queries, reference, chunk=512):
    """For each query, the nearest reference row: L2 distance, cosine similarity, indices."""
    q = queries.flatten(1).to(DEVICE)
    r = reference.flatten(1).to(DEVICE)
    r_unit = torch.nn.functional.normalize(r, dim=1)
    out = {"l2": [], "l2_index": [], "cos": [], "cos_index": []}
    for i in range(0, len(q), chunk):
        block = q[i:i + chunk]
        d = torch.cdist(block, r)  # (chunk, N_train)
        l2, l2_index = d.min(1)
        cos, cos_index = (torch.nn.functional.normalize(block, dim=1) @ r_unit.T).max(1)
        for key, value in zip(out, (l2, l2_index, cos, cos_index)):
            out[key].append(value.cpu())
    return {key: torch.cat(value) for key, value in out.items()}


g = torch.Generator().manual_seed(SEED)
syn_index = torch.randperm(len(synthetic), generator=g)[:NUM_QUERIES]
test_index = torch.randperm(len(test), generator=g)[:NUM_QUERIES]
queries = {
    "synthetic → train": synthetic.x[syn_index],
    "test → train": test.tensors[0][test_index],
    "noise → train": torch.randn((NUM_QUERIES, 1, 32, 32), generator=g),
}
t0 = time.perf_counter()
neighbours = {name: nearest(q, x_train) for name, q in queries.items()}
a, b = torch.randint(len(x_train), (2, NUM_QUERIES), generator=g)
pairs_l2 = (x_train[a] - x_train[b]).flatten(1).norm(dim=1)
pairs_cos = torch.nn.functional.cosine_similarity(x_train[a].flatten(1), x_train[b].flatten(1))
print(f"searched {len(x_train):,} training images for {NUM_QUERIES:,} queries of each kind "
      f"in {time.perf_counter() - t0:.1f} s ({RUN})\n")

summary = {name: (n["l2"], n["cos"]) for name, n in neighbours.items()}
summary["random train pairs"] = (pairs_l2, pairs_cos)
print(f"{'':22s} {'L2 median':>10s} {'L2 5%':>8s} {'cos median':>11s} {'cos 95%':>8s}")
for name, (l2, cos) in summary.items():
    print(f"{name:22s} {l2.median().item():10.2f} {l2.quantile(0.05).item():8.2f} "
          f"{cos.median().item():11.3f} {cos.quantile(0.95).item():8.3f}")

nn_syn, nn_test = neighbours["synthetic → train"], neighbours["test → train"]
assert (nn_test["l2"] >= 0).all() and nn_test["cos"].abs().max() <= 1 + 1e-4
assert nn_test["l2"].median() < pairs_l2.median(), "a nearest neighbour beats a random image"

# %% [markdown]
# "5 %" and "95 %" are the close tail: the distance that the nearest 5 % of the queries
# get under, and the similarity that the most similar 5 % get over. For privacy the tail
# matters more than the median: a method that leaks a few training images is not saved by
# the typical sample being far away.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name, (l2, cos) in summary.items():
    for ax, values in zip(axes, (l2, cos)):
        values = np.sort(values.numpy())
        ax.plot(values, np.linspace(0, 1, len(values)), label=name)
axes[0].set(xscale="log", ylabel="fraction of queries",
            xlabel="L2 distance to the nearest training image\n(random pairs: to each other)")
axes[1].set(ylabel="fraction of queries",
            xlabel="cosine similarity to the most similar training image\n"
                   "(random pairs: to each other)")
axes[0].legend(fontsize=8)
fig.suptitle(f"How close to the training set? ({RUN})", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Each curve is a cumulative distribution. In the L2 panel, the further left a curve
# rises, the closer those queries come to some training image; in the cosine panel,
# closeness is to the right. Watch the test → train curve: real images the teacher never
# saw. If the synthetic curve reaches it on the close side, some samples come as close to
# a training image as unseen real images do, and they deserve a look (below). If the
# synthetic curve lies next to the noise curve, synthesis has not moved the samples towards
# the training images, in this metric.
#
# ### Closeness by step size
#
# Magnitude dominates L2, and the step size sets the magnitude, so here are the same
# numbers per step size:

# %%
query_eta = synthetic.step_size[syn_index]
for eta in torch.unique(query_eta).flip(0):
    sel = query_eta == eta
    l2, cos = nn_syn["l2"][sel], nn_syn["cos"][sel]
    print(f"step size {eta.item():.1e} ({int(sel.sum()):4d} samples): "
          f"L2 median {l2.median().item():7.2f}, cosine median {cos.median().item():.3f}, "
          f"max {cos.max().item():.3f}")
print(f"test → train: L2 median {nn_test['l2'].median().item():.2f}, cosine median "
      f"{nn_test['cos'].median().item():.3f}, max {nn_test['cos'].max().item():.3f} ({RUN})")

# %% [markdown]
# ### Does the nearest image belong to the sample's class?
#
# If samples were blurred copies of training images, the nearest training image would
# usually have the class the sample was pushed towards. For real test images this share is
# the accuracy of a one-nearest-neighbour classifier; for noise, which has no class, we
# compare with a random class, and the share is about 10 %.

# %%
query_labels = {
    "synthetic → train": synthetic.labels[syn_index],
    "test → train": test.tensors[1][test_index],
    "noise → train": torch.randint(10, (NUM_QUERIES,), generator=g),
}
for name, labels in query_labels.items():
    same_l2 = (y_train[neighbours[name]["l2_index"]] == labels).float().mean().item()
    same_cos = (y_train[neighbours[name]["cos_index"]] == labels).float().mean().item()
    print(f"{name:18s}: nearest image has the query's class: {same_l2:6.1%} (L2), "
          f"{same_cos:6.1%} (cosine)")
print(f"({RUN})")

# %% [markdown]
# A share well above 10 % for the synthetic samples means their nearest real images are
# not random: the samples carry something of their class that is visible in pixel space.
# A share near 10 % means that, in pixel space, the samples point at no class in
# particular, although the teacher classifies them.

# %% [markdown]
# ### The closest pairs
#
# The samples most similar to a training image (by cosine, the metric that ignores
# magnitude), each above its nearest training image. For comparison, the same for real
# test images in the lower half.

# %%
def closest_pairs(query_x, found, k=8):
    top = found["cos"].topk(k).indices
    return torch.cat([query_x[top], x_train[found["cos_index"][top]]]), found["cos"][top]


syn_pairs, syn_sims = closest_pairs(queries["synthetic → train"], nn_syn)
test_pairs, test_sims = closest_pairs(queries["test → train"], nn_test)
fig = image_grid(torch.cat([syn_pairs, test_pairs]), nrow=8, per_class=False,
                 title="rows: synthetic sample / its nearest training image / "
                       f"test image / its nearest training image ({RUN})")
plt.show()
print("cosine similarity, synthetic pairs:", " ".join(f"{s:.3f}" for s in syn_sims.tolist()))
print("cosine similarity, test pairs:     ", " ".join(f"{s:.3f}" for s in test_sims.tolist()))

# %% [markdown]
# The lower two rows show what closeness looks like when it is real: a test image and a
# training image of the same kind of garment, often nearly the same picture. Compare the
# upper two rows with them, and the two lines of similarities. Each image is stretched to
# its own grey range, which makes a faint sample look stronger than it is.

# %% [markdown]
# ## What this says about privacy, and what it does not
#
# The measurements above answer one narrow question: **are the synthetic samples copies,
# or near-copies, of training images?** The yardstick is the test → train distance, how
# close an unseen image of the same distribution comes. Synthetic samples that stay
# clearly farther from the training set than that, at the close tail and not only on
# average, do not reproduce individual training images in pixel space. That is the sense
# in which the poster's sentence "samples capture decision boundaries without resembling
# real data" can be checked, and this chapter lets you check it at your size and seed.
#
# It is *not* a privacy guarantee, for several reasons:
#
# - **Distance in pixel space is a weak test.** An image can be far from every training
#   image in L2 or cosine and still reveal something about one of them (a logo, a
#   shape, an attribute of a person in a face data set). Nearest-neighbour checks catch
#   copies, not leaks.
# - **The samples are a function of the teacher, and the teacher of the data.** Whatever
#   the teacher memorised, CAKE can in principle extract; the student, trained to mimic the
#   teacher, can inherit it. Attacks that target the model rather than the samples
#   (membership inference, model inversion) are not measured here.
# - **One teacher, one data set, one seed.** Larger teachers memorise more, and a data set
#   with near-duplicate images behaves differently from Fashion-MNIST.
# - **What would give a guarantee.** Differential privacy is preserved under
#   post-processing: CAKE only queries the teacher, so if the teacher was trained with a
#   differentially private method (e.g. DP-SGD), the samples and the student inherit the
#   teacher's guarantee, without any change to CAKE. How much accuracy the student then
#   keeps is the "data utility and privacy trade-off" the poster names as future work.
#
# So the honest reading is: in this experiment, you can measure whether CAKE's samples are
# near-copies of training images; that they are not is necessary for privacy, and far
# from sufficient.

# %% [markdown]
# ## Summary
#
# - CAKE's samples are shaped by the teacher's gradients and a smoothness prior, not by
#   the data; per class they look like structured noise, and their magnitude depends on
#   the step size of their mini-batch.
# - A nearest-neighbour search over the whole training set, in L2 and cosine, with real
#   test images as the yardstick, tells whether samples come as close to training images as
#   unseen real images do.
# - Not resembling the data is necessary for privacy, not sufficient: the samples and
#   the student carry what the teacher learned, including what it memorised. Formal
#   guarantees have to come from the teacher's training (differential privacy).
#
# ## Exercises
#
# 1. Run the chapter at `default` size. Do the synthetic curves move towards the
#    test → train curve as the samples get more steps?
# 2. Measure closeness in a space that ignores brightness and offset: subtract each image's
#    mean before the cosine (this is the Pearson correlation). What happens to the
#    yardsticks, which share a constant background?
# 3. Measure closeness in the *teacher's* feature space (the output of `teacher.features`)
#    instead of pixel space. Are samples closer to training images there?
# 4. Train a teacher for many epochs on a tiny subset (say 500 images) so that it
#    memorises them, then synthesise from it. Are the samples closer to those 500 images
#    than to the rest of the training set?
# 5. Sketch a membership inference test for the *student*: does it have lower loss on
#    training images than on test images, and more so than the teacher?
