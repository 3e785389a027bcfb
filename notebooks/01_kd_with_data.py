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
# # Knowledge distillation, with the data
#
# Before we take the data away, we look at what distillation does when the data is there.
# In this chapter you train a **teacher** classifier, then two copies of a smaller
# **student**: one learns from the true labels alone, the other from the teacher's
# *soft labels*, the full probability vector the teacher assigns to each training image.
# You will look at soft labels and at how a *temperature* flattens them, write the
# classic knowledge-distillation (KD) loss of {cite}`hinton2015distilling` in a ten-line
# training loop, and check it against `cake_mini.kd_loss`. The students' test accuracies
# are the reference point for the rest of the book: a data-free method such as CAKE
# {cite}`braun2024cake` can at best approach the student that was distilled *with* data.
#
# At `smoke` size the chapter uses scikit-learn's 8×8 digits; at `default` and `paper`
# size it uses Fashion-MNIST with the paper's LeNet-5 teacher and LeNet-5-Half student.

# %%
# Setup: on Colab (or anywhere cake_mini is missing) install it first.
try:
    import cake_mini
except ImportError:
    # %pip install -q cake_mini
    import cake_mini

import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import cake_mini.sizes
from cake_mini import DistillConfig, distill, evaluate, kd_loss, train_classifier
from cake_mini.data import DATASET_INFO, denormalize, load_dataset
from cake_mini.models import count_parameters, make_model

SEED = 0
torch.manual_seed(SEED)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HARDWARE = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")

SIZE = cake_mini.sizes.get_size()
DATASET = cake_mini.sizes.pick(smoke="digits", default="fashion-mnist", paper="fashion-mnist")
TEACHER_EPOCHS = cake_mini.sizes.pick(smoke=30, default=10, paper=30)
STUDENT_EPOCHS = cake_mini.sizes.pick(smoke=30, default=10, paper=30)
PROGRESS = SIZE != "smoke"  # progress bars only where runs take a while
RUN = f"size={SIZE}, seed={SEED}, device={HARDWARE}"
print(RUN, f"| data set: {DATASET}")

# %% [markdown]
# ## Teacher and student
#
# The teacher is the larger model, trained on labelled data the usual way. The student
# is smaller: the paper's pair for MNIST-type data is LeNet-5 (about 60 k parameters)
# and LeNet-5-Half (every layer at half width); for the 8×8 digits we use a small CNN
# at width 32 and at width 16. `make_model` builds both by name, and
# `train_classifier` trains the teacher with the recipe the book uses everywhere (SGD with
# momentum, one-cycle learning rate).

# %%
INFO = DATASET_INFO[DATASET]
NUM_CLASSES = INFO.num_classes
CLASS_NAMES = (["T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
               if DATASET == "fashion-mnist" else [str(c) for c in range(10)])
if DATASET == "digits":
    TEACHER_ARCH, STUDENT_ARCH = ("cnn", {"width": 32}), ("cnn", {"width": 16})
    TEACHER_RECIPE = DistillConfig(epochs=TEACHER_EPOCHS, lr=0.1, batch_size=64,
                                   augment="shift", shift_pixels=1, seed=SEED)
    STUDENT_RECIPE = DistillConfig(epochs=STUDENT_EPOCHS, lr=0.1, batch_size=128, seed=SEED)
else:
    TEACHER_ARCH, STUDENT_ARCH = ("lenet5", {}), ("lenet5-half", {})
    TEACHER_RECIPE = DistillConfig(epochs=TEACHER_EPOCHS, lr=0.1, augment="flip-shift", seed=SEED)
    STUDENT_RECIPE = DistillConfig(epochs=STUDENT_EPOCHS, lr=0.1, batch_size=128, seed=SEED)


def new_model(arch, seed):
    """A fresh model of ``arch = (name, options)``, initialised from ``seed``."""
    torch.manual_seed(seed)
    name, options = arch
    return make_model(name, NUM_CLASSES, in_channels=INFO.in_channels,
                      image_size=INFO.image_size, **options).to(DEVICE)


train_set = load_dataset(DATASET, "train")
test_set = load_dataset(DATASET, "test")
x_train, y_train = train_set.tensors
print(f"train {tuple(x_train.shape)}, test {tuple(test_set.tensors[0].shape)}")

teacher = new_model(TEACHER_ARCH, SEED)
t0 = time.perf_counter()
train_classifier(teacher, train_set, TEACHER_RECIPE, device=DEVICE, progress=PROGRESS)
teacher.eval()
teacher_acc = evaluate(teacher, test_set)
print(RUN)
print(f"teacher {TEACHER_ARCH[0]} ({count_parameters(teacher):,} parameters): "
      f"test accuracy {teacher_acc:.2%} after {TEACHER_EPOCHS} epochs, {time.perf_counter() - t0:.0f} s")
assert teacher_acc > 3 / NUM_CLASSES, "the teacher should beat chance (10 %) clearly"

# %% [markdown]
# ## Soft labels and temperature
#
# A classifier's softmax output is more than its top class. For an ambiguous image the
# teacher spreads probability over the classes it finds similar, a "dark knowledge" that
# the one-hot label throws away. Dividing the logits by a **temperature** $T > 1$ before
# the softmax, $p_c = \mathrm{softmax}(z / T)_c$, flattens the distribution and makes the
# small probabilities visible. Below: four test images, picked by how confident the
# teacher is about them, with the teacher's softmax at $T = 1$ and at $T = 4$.

# %%
x_test, y_test = test_set.tensors
with torch.no_grad():
    test_logits = torch.cat([teacher(chunk.to(DEVICE)).float().cpu() for chunk in x_test.split(1024)])
order = test_logits.softmax(-1).max(-1).values.argsort()  # least to most confident
picks = {"most confident": order[-1], "median confidence": order[len(order) // 2],
         "least confident": order[0], "2nd least confident": order[1]}
index = torch.stack(list(picks.values()))
examples, logits = x_test[index], test_logits[index]
TEMPERATURES = (1.0, 4.0)
fig, axes = plt.subplots(len(TEMPERATURES) + 1, len(examples), figsize=(2.6 * len(examples), 6.0))
for j, (kind, i) in enumerate(picks.items()):
    axes[0, j].imshow(denormalize(x_test[i], DATASET)[0], cmap="gray")
    axes[0, j].set_title(f"{kind}\ntrue: {CLASS_NAMES[int(y_test[i])]}", fontsize=9)
    axes[0, j].axis("off")
    for row, T in enumerate(TEMPERATURES, start=1):
        probs = (logits[j] / T).softmax(-1)
        axes[row, j].bar(range(NUM_CLASSES), probs, color="tab:blue" if T == 1 else "tab:orange")
        axes[row, j].set_ylim(0, 1)
        axes[row, j].set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=90, fontsize=7)
        axes[row, j].set_title(f"T = {T:g}", fontsize=9)
fig.suptitle(f"the teacher's soft labels on four test images ({RUN})", fontsize=9)
fig.tight_layout()
plt.show()
assert torch.allclose(logits.softmax(-1).sum(-1), torch.ones(len(examples)))

# %% [markdown]
# On the confident and the typical (median) image, a well-trained teacher puts almost all
# mass on one class at $T = 1$, and the other bars are near zero. At $T = 4$ the runners-up
# show. The least confident images spread their mass over a few classes already at
# $T = 1$, and the teacher may even be wrong on them (compare the bars with the true class
# in the title). Look at *which* classes share the mass: typically classes that look
# alike, such as shirt, T-shirt, pullover and coat on Fashion-MNIST, rather than sneaker.
# This similarity structure is what a student can learn from soft labels and cannot learn
# from one-hot labels. With a weak teacher (few epochs) the bars are flatter everywhere.
#
# ## The KD loss
#
# The CAKE poster writes the distillation objective as
#
# $$
# \mathcal{L}_\text{KD} = \lambda_\text{true}\,\mathrm{CE}\big(y, f^S(x)\big)
#   + \lambda_\text{soft}\,\mathrm{CE}\big(f^T(x), f^S(x)\big),
# $$
#
# one cross-entropy against the true label $y$ and one against the teacher's soft label.
# Hinton et al. compute the soft term at temperature $T$ on both sides and multiply it by
# $T^2$: the gradient of the soft term with respect to the student's logits shrinks like
# $1/T^2$, and the factor undoes that, so $\lambda_\text{soft}$ means the same at every $T$.
# `cake_mini.kd_loss` implements exactly this. We check it against a from-scratch
# computation, and then look at the gradient scale with and without the $T^2$.

# %%
torch.manual_seed(SEED)
s_logits, t_logits = 3 * torch.randn(16, NUM_CLASSES), 3 * torch.randn(16, NUM_CLASSES)
y = torch.randint(NUM_CLASSES, (16,))
T, w_true, w_soft = 4.0, 0.3, 0.7
by_hand = (w_true * F.cross_entropy(s_logits, y)
           + w_soft * T**2 * -(F.softmax(t_logits / T, -1) * F.log_softmax(s_logits / T, -1)).sum(-1).mean())
ours = kd_loss(s_logits, t_logits, y, temperature=T, w_true=w_true, w_soft=w_soft)
print(f"kd_loss {ours.item():.5f}   by hand {by_hand.item():.5f}")
assert torch.allclose(ours, by_hand)

temps = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
grad_norm = {"with T²": [], "without T²": []}
for T in temps.tolist():
    s = s_logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(kd_loss(s, t_logits, temperature=T), s)
    grad_norm["with T²"].append(g.norm().item())
    grad_norm["without T²"].append(g.norm().item() / T**2)
fig, ax = plt.subplots(figsize=(4.5, 3), layout="constrained")
for label, values in grad_norm.items():
    ax.loglog(temps, values, "o-", label=label)
ax.set_xlabel("temperature T")
ax.set_ylabel("|∂ soft term / ∂ student logits|")
ax.legend()
ax.set_title("gradient of the soft term (random logits)", fontsize=9)
plt.show()

# %% [markdown]
# Without the factor the gradient falls roughly as $1/T^2$ (two decades for every decade of
# $T$); with it, the gradient stays within a small factor across temperatures. For large
# $T$ the $T^2$-scaled gradient approaches a constant: the soft term then matches the
# students' and teacher's *logits* (centred), not only their probabilities.
#
# ## Three students on the same data
#
# Now the comparison. All students have the same architecture and the same
# initialisation, and see the same training images for the same number of epochs:
#
# 1. **labels only**: cross-entropy against the true labels (`train_classifier`).
# 2. **soft labels, package**: `distill(student, train_set, teacher=teacher)` ignores the
#    stored labels and relabels every mini-batch online with the teacher's softmax
#    ($\lambda_\text{true} = 0$, $\lambda_\text{soft} = 1$, $T = 1$). This is exactly what a
#    data-free student gets later, only with real images instead of synthetic ones.
# 3. **Hinton KD, by hand**: the ten-line loop below with `kd_loss` at $T = 4$ and
#    $\lambda_\text{true} = \lambda_\text{soft} = 0.5$.

# %%
def kd_train(student, teacher, dataset, epochs, *, temperature=4.0, w_true=0.5, w_soft=0.5,
             lr=0.1, batch_size=128):
    """Classic KD: the student sees real images, true labels and the teacher's logits."""
    x_all, y_all = (t.to(DEVICE) for t in dataset.tensors)
    steps = epochs * -(-len(x_all) // batch_size)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    student.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_all), device=DEVICE).split(batch_size):
            x, y = x_all[idx], y_all[idx]
            with torch.no_grad():
                t_logits = teacher(x).float()
            loss = kd_loss(student(x).float(), t_logits, y, temperature=temperature,
                           w_true=w_true, w_soft=w_soft)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return student.eval()


results, curves = {}, {}
t0 = time.perf_counter()
student = new_model(STUDENT_ARCH, SEED + 1)
r = train_classifier(student, train_set, STUDENT_RECIPE, eval_set=test_set, device=DEVICE, progress=PROGRESS)
results["labels only"], curves["labels only"] = evaluate(student, test_set), r.history

student = new_model(STUDENT_ARCH, SEED + 1)
r = distill(student, train_set, STUDENT_RECIPE, teacher=teacher, eval_set=test_set,
            device=DEVICE, progress=PROGRESS)
results["soft labels (distill)"], curves["soft labels (distill)"] = evaluate(student, test_set), r.history

student = new_model(STUDENT_ARCH, SEED + 1)
kd_train(student, teacher, train_set, STUDENT_EPOCHS, lr=STUDENT_RECIPE.lr, batch_size=STUDENT_RECIPE.batch_size)
results["Hinton KD, T=4 (by hand)"] = evaluate(student, test_set)

print(RUN, f"| {DATASET}, {STUDENT_EPOCHS} student epochs, {time.perf_counter() - t0:.0f} s for all three")
print(f"{'model':<28} test accuracy")
print(f"{'teacher ' + TEACHER_ARCH[0]:<28} {teacher_acc:.2%}")
for name, acc in results.items():
    print(f"{'student: ' + name:<28} {acc:.2%}")
assert all(acc > 2 / NUM_CLASSES for acc in results.values()), "every student should beat chance"
assert results["soft labels (distill)"] > results["labels only"] - 0.05, \
    "soft labels alone should teach about as well as true labels"

# %%
fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
for name, history in curves.items():
    ax.plot([h["epoch"] for h in history], [h["eval_accuracy"] for h in history], "o-", label=name, ms=3)
ax.axhline(teacher_acc, color="k", ls="--", lw=1, label="teacher")
best = max([teacher_acc] + [h["eval_accuracy"] for history in curves.values() for h in history])
ax.set_ylim(top=best + 0.01)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.legend(fontsize=8)
ax.set_title(f"students on {DATASET}\n{RUN}", fontsize=8)
plt.show()

# %% [markdown]
# Read the table and the curves together. The student has fewer parameters than the
# teacher, so it usually ends a little below it. Whether soft labels beat hard labels
# depends on the data, the student and the recipe; here the three students end close to
# each other (the `assert` below the table keeps the distilled one within a few points of
# the labels-only one). Each number comes from a single seed, and differences of a fraction
# of a percent between students are within the spread of seeds; exercise 1 shows a
# setting where soft labels matter more.
#
# What matters for the rest of the book is the middle row: a student trained **only on
# the teacher's soft labels** (no true label anywhere) reaches about the accuracy of one
# trained on true labels. So the teacher's outputs carry enough knowledge. What is
# missing without data is the *inputs* $x$ at which to ask the teacher.
#
# ## Why not just ask the teacher about noise?
#
# The obvious data-free idea: feed the teacher random inputs and distil on its answers.
# Here is what the teacher says about 2,000 images of standard normal noise, the same
# prior CAKE starts from.

# %%
torch.manual_seed(SEED)
noise = torch.randn(2000, INFO.in_channels, INFO.image_size, INFO.image_size)
with torch.no_grad():
    noise_probs = teacher(noise.to(DEVICE)).float().softmax(-1).cpu()
counts = torch.bincount(noise_probs.argmax(-1), minlength=NUM_CLASSES)
fig, ax = plt.subplots(figsize=(5, 2.8), layout="constrained")
ax.bar(range(NUM_CLASSES), counts)
ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=45, fontsize=8)
ax.set_ylabel("noise images")
ax.set_title(f"teacher's top class on N(0, I) noise\n{RUN}", fontsize=8)
plt.show()
print(RUN)
print(f"classes the teacher predicts for noise: {int((counts > 0).sum())} of {NUM_CLASSES}; "
      f"largest share {counts.max().item() / len(noise):.0%}; "
      f"median confidence {noise_probs.max(-1).values.median():.2f}")
assert counts.max() > 2 * len(noise) / NUM_CLASSES, "noise should be far from evenly spread over the classes"

# %% [markdown]
# The noise does not spread over the classes the way real images do: one class or a few
# take most of it, and some classes get no noise image at all (the printout counts them;
# the `assert` checks that the largest class gets more than twice its fair share). Noise is
# far from the data, and the teacher extrapolates there in whatever way its training left
# it. A student trained on these
# samples learns little about the classes that noise never reaches. Chapter 2 makes this
# visible in two dimensions, and chapter 4 measures this noise baseline against CAKE on the
# digits.
#
# ## Summary
#
# - A **teacher** is trained on labelled data; a smaller **student** learns to predict
#   like it. `train_classifier` and `distill` share one training recipe.
# - **Soft labels** (the teacher's softmax) carry similarity structure that one-hot labels
#   lack; a **temperature** $T > 1$ flattens them.
# - The **KD loss** combines cross-entropy against true labels and against the teacher's
#   soft labels, the soft term scaled by $T^2$; `cake_mini.kd_loss` is that formula.
# - A student trained on soft labels alone nearly matches one trained on true labels, but
#   every variant needs real inputs $x$. Random noise is not a substitute: the teacher
#   puts it into a few classes.
#
# ## Exercises
#
# 1. Give the labels-only student and the distilled student only 10 % of the training set
#    (`torch.utils.data.TensorDataset(*(t[:len(t) // 10] for t in train_set.tensors))`).
#    Which one loses more accuracy?
# 2. Sweep the temperature of `kd_train` over 1, 2, 4, 8, 16 with $\lambda_\text{true} = 0$.
#    Is there a best $T$ here? What happens if you drop the $T^2$ factor (divide the loss by
#    $T^2$) and keep the learning rate?
# 3. `distill(..., teacher=teacher)` uses `DistillConfig.temperature` only on the teacher's
#    side. Write down the loss it minimises for $T = 4$ and compare it with `kd_loss`.
# 4. Train a *teacher* for only one epoch and distil from it. Does the student end up better
#    or worse than its teacher? Why can a student beat a weak teacher?
# 5. Repeat the noise experiment with uniform noise in $[-1, 1]$, and with noise of standard
#    deviation 0.1. Which prior covers more classes?
