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
# # The losses and schedules, up close
#
# Chapter 2 ran CAKE as a whole. This chapter takes it apart. You will build a synthetic
# batch and look at its layout (groups of distinct classes), draw the forces that the
# classification and contrastive terms put on individual samples, watch total variation
# smooth an image, plot the step size schedules "across scales", and follow single samples
# under CAKE and LAKE at three step sizes. Along the way every loss of `cake_mini` is
# checked against a from-scratch computation with the reference implementation's scaling,
# so that you know exactly what the weights $w_\text{cls}$, $w_\text{contr}$ and
# $w_\text{TV}$ multiply. Everything here takes seconds on a CPU.

# %%
# Setup: on Colab (or anywhere cake_mini is missing) install it first.
try:
    import cake_mini
except ImportError:
    # %pip install -q cake_mini
    import cake_mini

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import cake_mini.sizes
from cake_mini import (DistillConfig, SynthesisConfig, classification_loss, contrastive_loss, step_sizes,
                       total_variation, train_classifier)
from cake_mini.data import DatasetNotFoundError, load_dataset, toy2d
from cake_mini.models import make_model
from cake_mini.synthesis import initial_batch, synthesis_objective
from cake_mini.viz import plot_decision_regions

SEED = 0
torch.manual_seed(SEED)
DEVICE = torch.device("cpu")  # everything in this chapter is tiny
HARDWARE = f"cpu ({torch.get_num_threads()} threads)"

SIZE = cake_mini.sizes.get_size()
TRAJECTORY_STEPS = cake_mini.sizes.pick(smoke=200, default=300, paper=500)
TV_STEPS = cake_mini.sizes.pick(smoke=200, default=400, paper=400)
RUN = f"size={SIZE}, seed={SEED}, device={HARDWARE}"
print(RUN)

# %% [markdown]
# ## A batch is made of groups
#
# A synthetic mini-batch of $B$ samples is laid out as $G = B / K$ groups of $K$ samples.
# Inside a group every sample has a **different** class: the group's labels are the first
# $K$ entries of a random permutation of the $C$ classes. The contrastive term only pairs
# samples inside a group, so every pair it sees has two different labels. Here is the
# layout for $C = 10$ classes, groups of $K = 5$ and a batch of 40:

# %%
C, K, B = 10, 5, 40
config = SynthesisConfig(batch_size=B, group_size=K, seed=SEED)
x0, labels = initial_batch(0, config, (1, 8, 8), C, K)  # noise (B, 1, 8, 8), labels (B,)
layout = labels.view(-1, K)  # (G, K)
print(f"x: {tuple(x0.shape)}, labels: {tuple(labels.shape)} -> layout (G, K) = {tuple(layout.shape)}")
print(layout)
assert all(len(set(row.tolist())) == K for row in layout), "a group must hold K distinct classes"

fig, ax = plt.subplots(figsize=(3.2, 4.2))
ax.imshow(layout, cmap="tab10", vmin=0, vmax=9)
for (g, k), c in zip(torch.cartesian_prod(torch.arange(layout.shape[0]), torch.arange(K)).tolist(),
                     layout.flatten().tolist()):
    ax.text(k, g, c, ha="center", va="center", color="white", fontsize=9)
ax.set_xlabel("position in group (K)")
ax.set_ylabel("group (G)")
ax.set_title("labels of one batch", fontsize=9)
plt.show()

# %% [markdown]
# Each row is a group, each colour a class. With $K = C$ every group contains every class
# once (the paper's setting for 10-class data); with $K < C$, as here, a group is a random
# subset, and over many groups every pair of classes meets. Over the whole batch the classes
# are close to balanced, but not exactly.
#
# ## The two forces on a sample
#
# The classification term, $K \cdot \mathrm{CE}(y_i, f^T(x_i))$ averaged over the batch,
# moves each sample on its own. The contrastive term,
# $\sum_{i<j} \|f^T(x_i) - f^T(x_j)\|^2$ over the pairs of a group, couples the samples of a
# group: each sample feels one pull from each of its $K - 1$ partners. On a 2D teacher we
# can draw both forces, the negative gradient with respect to each sample, as arrows.
# The teacher: an MLP on three Gaussian blobs.

# %%
x_blobs, y_blobs = toy2d("blobs", 600, seed=SEED)
torch.manual_seed(SEED)
teacher = make_model("mlp", 3, in_features=2, hidden=64, depth=3)
train_classifier(teacher, TensorDataset(x_blobs, y_blobs),
                 DistillConfig(epochs=40, lr=0.05, batch_size=64, val_fraction=0.0, seed=SEED), progress=False)
teacher.eval()

K2 = 3  # one sample of each class per group
pts, pts_labels = initial_batch(0, SynthesisConfig(batch_size=4 * K2, group_size=K2, seed=3), (2,), 3, K2)
pts = 1.2 * pts  # spread the start a little for the picture


def force(loss_fn, x):
    """Negative gradient of ``loss_fn(logits)`` with respect to the samples ``x`` (N, 2)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(teacher(x)), x)
    return -grad


forces = {
    "classification": force(lambda z: classification_loss(z, pts_labels, K2), pts),
    "contrastive": force(lambda z: contrastive_loss(z, pts_labels, K2), pts),
}
fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
for ax, (name, f) in zip(axes, forces.items()):
    plot_decision_regions(teacher, ax, points=pts, labels=pts_labels, num_classes=3, marker_size=40,
                          extent=(-3.5, 3.5, -3.5, 3.5), title=f"{name} force (−gradient)")
    for group in range(len(pts) // K2):  # thin lines join the samples of a group
        members = range(group * K2, (group + 1) * K2)
        for i in members:
            for j in members:
                if i < j:
                    ax.plot(pts[[i, j], 0], pts[[i, j], 1], color="grey", lw=0.6, ls=":")
    direction = f / f.norm(dim=1, keepdim=True).max()  # longest arrow = 1
    ax.quiver(pts[:, 0], pts[:, 1], direction[:, 0], direction[:, 1], angles="xy", scale_units="xy",
              scale=1.0, width=0.006, color="k")
fig.suptitle(f"forces on 4 groups of 3 samples (dotted: partners in a group); {RUN}", fontsize=9)
plt.show()
print(RUN)
for (name, f), weight in zip(forces.items(), (10.0, 0.1)):  # chapter 2's weights w_cls, w_contr
    print(f"{name:<15} force norms: median {f.norm(dim=1).median():.3g}, max {f.norm(dim=1).max():.3g}"
          f"  (x {weight:g}, chapter 2's weight: median {weight * f.norm(dim=1).median():.3g})")
assert 10.0 * forces["classification"].norm(dim=1).median() > 0.1 * forces["contrastive"].norm(dim=1).median()

# %% [markdown]
# Arrows are scaled per panel (the longest has length 1), so compare directions within a
# panel and the printed magnitudes across panels. Unweighted, the two forces are of
# comparable size or the contrastive one is larger; at chapter 2's weights
# ($w_\text{cls} = 10$, $w_\text{contr} = 0.1$) the classification force dominates and the
# contrastive pull is a correction (the `assert` above checks this). The classification force points from a
# sample into its own class's region: strongly for samples on the wrong side, weakly for
# samples already deep inside their region, because the cross-entropy gradient vanishes
# as the teacher grows confident. The contrastive force points towards the sample's group
# partners, more precisely towards where the *teacher's logits* of the partners are, so it
# acts along the directions in which the logits change, i.e. across boundaries.
# Together: samples cross onto their own side, then get held near the boundary by their
# partners on the other sides.
#
# ## The reference scalings, checked
#
# The weights only mean something together with the normalisation of each term. `cake_mini`
# reproduces the reference implementation's reductions:
#
# - classification: $K \cdot \frac{1}{B}\sum_i \mathrm{CE}(y_i, f(x_i))$;
# - contrastive: the mean of the squared differences over the $(G, K, K, C)$ tensor of all
#   ordered pairs in every group, times $K^2 / 2$, which equals
#   $\frac{1}{G\,C}\sum_{g}\sum_{i<j \in g}\|f(x_i) - f(x_j)\|^2$;
# - total variation: per image and channel, the mean absolute vertical difference plus the
#   mean absolute horizontal difference, averaged over the batch.
#
# We recompute all three from scratch on random logits and images, and the weighted total
# that `synthesis_objective` hands to the optimiser.

# %%
torch.manual_seed(SEED)
G, K, C = 6, 5, 10
logits = 4 * torch.randn(G * K, C)
labels = torch.stack([torch.randperm(C)[:K] for _ in range(G)]).flatten()
images = torch.randn(G * K, 1, 8, 8)

cls_by_hand = K * F.cross_entropy(logits, labels)
z = logits.view(G, K, C)
pair_tensor = (z[:, :, None, :] - z[:, None, :, :]) ** 2  # (G, K, K, C), ordered pairs, diagonal 0
contr_reference = pair_tensor.mean() * K**2 / 2
contr_pairs = sum(((z[g, i] - z[g, j]) ** 2).sum() for g in range(G) for i in range(K) for j in range(i + 1, K)) / (G * C)
tv_by_hand = ((images[..., 1:, :] - images[..., :-1, :]).abs().mean((-2, -1))
              + (images[..., :, 1:] - images[..., :, :-1]).abs().mean((-2, -1))).mean()

checks = {
    "classification  K * mean CE": (classification_loss(logits, labels, K), cls_by_hand),
    "contrastive  mean(G,K,K,C) * K^2/2": (contrastive_loss(logits, labels, K), contr_reference),
    "contrastive  sum over pairs / (G C)": (contrastive_loss(logits, labels, K), contr_pairs),
    "total variation": (total_variation(images), tv_by_hand),
}
cfg = SynthesisConfig(w_cls=1e3, w_contr=1e1, w_tv=1e5)
total = synthesis_objective(logits, images, labels, K, cfg)
checks["objective  w_cls*cls + w_contr*contr + w_tv*tv"] = (
    total[0], cfg.w_cls * cls_by_hand + cfg.w_contr * contr_pairs + cfg.w_tv * tv_by_hand)
print(RUN)
for name, (ours, by_hand) in checks.items():
    print(f"{name:<50} cake_mini {ours.item():>12.4f}   by hand {by_hand.item():>12.4f}")
    assert torch.allclose(ours, by_hand, rtol=1e-5), name

# %% [markdown]
# Why it matters: with the reference weights ($w_\text{cls} = 10^3$, $w_\text{contr} = 10$,
# $w_\text{TV} = 10^5$) and these normalisations, the three terms of a freshly initialised
# batch have very different sizes. The printout above shows them for random logits; on a real
# teacher, look at the three weighted terms at step 0 before changing a weight, because the
# gradients, not the loss values, decide who wins (exercise 2). Note also that the
# contrastive term grows with the *square* of the logit scale, while the cross-entropy grows
# only linearly: a teacher with large logits makes the contrastive pull much stronger, and
# the run can diverge (chapter 2's explorer, chapter 4).
#
# ## Total variation: a prior for images
#
# Natural images are mostly smooth; noise is not. Total variation (TV) measures roughness as
# the mean absolute difference between neighbouring pixels. Below, an image, the image
# with Gaussian noise added, and pure noise, each with its TV. Then plain gradient descent on
# TV alone, starting from the noisy image and from pure noise, the effect the TV term has on
# a synthetic sample when nothing else pulls.

# %%
try:
    images, _ = load_dataset("fashion-mnist", "test").tensors
    IMAGE_SET = "fashion-mnist"
except DatasetNotFoundError:  # no copy of Fashion-MNIST here and no download: use the bundled digits
    images, _ = load_dataset("digits", "test").tensors
    IMAGE_SET = "digits"
clean = images[:1]  # (1, 1, H, W), normalised
torch.manual_seed(SEED)
noisy = clean + 0.8 * torch.randn_like(clean)
pure = torch.randn_like(clean)
print(RUN, f"| image from {IMAGE_SET}, shape {tuple(clean.shape)}")
for name, img in (("image", clean), ("image + noise", noisy), ("N(0, I) noise", pure)):
    print(f"TV({name}) = {total_variation(img).item():.3f}")
assert total_variation(clean) < total_variation(noisy) and total_variation(clean) < total_variation(pure)


def tv_descent(x, steps, pixel_step=0.01):
    """Gradient descent on TV alone; returns {step: image}. The step is given per pixel:
    TV is a mean over about H*W differences, so its gradient per pixel is ~1/(H*W)."""
    h, w = x.shape[-2:]
    eta = pixel_step * h * w
    frames, x = {0: x.clone()}, x.clone()
    for t in range(1, steps + 1):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(total_variation(x), x)
        x = (x - eta * grad).detach()
        if t in (steps // 20, steps // 4, steps):
            frames[t] = x.clone()
    return frames


rows = {"image + noise": tv_descent(noisy, TV_STEPS), "N(0, I) noise": tv_descent(pure, TV_STEPS)}
columns = list(rows["image + noise"])
fig, axes = plt.subplots(2, len(columns) + 1, figsize=(2.2 * (len(columns) + 1), 4.8), layout="constrained")
for i, (name, frames) in enumerate(rows.items()):
    for j, t in enumerate(columns):
        axes[i, j].imshow(frames[t][0, 0], cmap="gray", vmin=-1, vmax=1)  # the data's range
        axes[i, j].set_title(f"{name}\nstep {t}: TV {total_variation(frames[t]).item():.2f}", fontsize=8)
    axes[i, -1].imshow(clean[0, 0], cmap="gray", vmin=-1, vmax=1)
    axes[i, -1].set_title("clean image (reference)", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle(f"gradient descent on total variation alone ({RUN})", fontsize=9)
plt.show()
final_tv = {name: total_variation(frames[TV_STEPS]).item() for name, frames in rows.items()}
assert all(final_tv[name] < total_variation(start).item() for name, start in (("image + noise", noisy),
                                                                             ("N(0, I) noise", pure)))

# %% [markdown]
# TV descent removes pixel-level noise first: after a few steps the noisy image is visibly
# smoother, and the large structures (the garment's or digit's outline) survive longest
# because a sharp edge costs the same TV as a gentle ramp of the same height. Run long enough
# and TV flattens *everything*: it has no idea what the image should show. Starting from pure
# noise it produces blotches, then a nearly flat image. In CAKE the classification and
# contrastive terms supply the content, and TV only keeps it from being pixel noise.
# That is why $w_\text{TV}$ must be balanced against them: too small and samples stay noisy
# (and the teacher may be fooled by high-frequency patterns no real image has), too large and
# every sample turns into the same flat image, which the teacher puts into a single class
# (chapter 4 explores this on the digits).
#
# ## Step sizes across scales
#
# CAKE gives every mini-batch its own step size, falling over the $M$ batches from $\eta_0$
# by $d$ decades: log-linearly, $\eta_m = \eta_0\,10^{-d\,m/M}$, or along a cosine in the
# exponent, which lingers longer at both ends. Here $\eta_0 = 0.1$ and $d = 4$, the
# reference defaults, over 256 batches.

# %%
M = 256
schedules = {kind: step_sizes(M, lr=0.1, decades=4, kind=kind) for kind in ("log-linear", "cosine", "constant")}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
for kind, eta in schedules.items():
    axes[0].semilogy(eta, label=kind)
    if kind != "constant":  # (all 256 batches at 0.1)
        axes[1].hist(eta.log10(), bins=24, histtype="step", lw=1.5, label=kind)
axes[0].set_xlabel("mini-batch m")
axes[0].set_ylabel("step size η_m")
axes[0].legend()
axes[1].set_xlabel("log10 η")
axes[1].set_ylabel("batches")
axes[1].set_title("how many batches get each step size", fontsize=9)
axes[1].legend()
plt.show()
for kind, eta in schedules.items():
    print(f"{kind:<11} first {eta[0]:.3g}, median {eta.median():.3g}, last {eta[-1]:.3g}")
assert schedules["log-linear"][0] == schedules["cosine"][0] == 0.1
assert schedules["log-linear"][-1] > 0.1 * 1e-4  # approaches, never reaches, eta0 * 10^-d

# %% [markdown]
# The log-linear schedule spends the same number of batches in every decade, so the
# synthetic set holds as many samples moved at $\eta \approx 10^{-1}$ as at $10^{-4}$. The
# cosine schedule puts more batches at the two ends, at the largest and smallest steps,
# and fewer in between. The constant schedule gives one scale only. Which mixture suits a
# teacher is an empirical question: the calibration notes of this project found that for a
# Fashion-MNIST LeNet-5, the samples of the largest step sizes sit far outside the data's
# range, and those of the smallest ones barely move from noise.
#
# ## Samples under CAKE and LAKE
#
# Finally, the dynamics of single samples. On a 2D teacher (two moons) we synthesise one
# batch of 20 samples (10 groups of two), all of which start on the wrong side of the
# boundary, record every iterate, and draw the paths at three step sizes, once with plain gradient steps (CAKE) and once with Langevin
# noise $\sqrt{2\eta}\,\varepsilon$ added after each step (LAKE).
#
# One detail of the scaling matters here. Both loss terms are *means* over the batch, so
# the gradient that reaches one sample is $\eta\,\frac{K}{B}\,w\,\nabla(\dots)$: the
# per-sample drift shrinks with the batch size $B$, while the Langevin noise
# $\sqrt{2\eta}$ does not depend on $B$ at all. And the drift is $O(\eta)$ per step, the
# noise $O(\sqrt{\eta})$, so the smaller the step size, the more the noise dominates.

# %%
x_moons, y_moons = toy2d("moons", 600, seed=SEED)
torch.manual_seed(SEED)
moons = make_model("mlp", 2, in_features=2, hidden=64, depth=3)
train_classifier(moons, TensorDataset(x_moons, y_moons),
                 DistillConfig(epochs=40, lr=0.05, batch_size=64, val_fraction=0.0, seed=SEED), progress=False)
moons.eval()


def trajectories(x, y, eta, steps, method, w_cls=10.0, w_contr=0.1, seed=SEED):
    """Every iterate of a batch (B, 2) in groups of K = 2 under CAKE or LAKE: (steps + 1, B, 2)."""
    noise = torch.Generator().manual_seed(seed)
    path = [x.clone()]
    for _ in range(steps):
        x.requires_grad_(True)
        z = moons(x)
        loss = w_cls * classification_loss(z, y, 2) + w_contr * contrastive_loss(z, y, 2)
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() - eta * grad
        if method == "lake":
            x = x + math.sqrt(2 * eta) * torch.randn(x.shape, generator=noise)
        path.append(x.clone())
    return torch.stack(path)


# ten groups of two, every sample starting on the *wrong* side of the boundary
pool = torch.randn(400, 2, generator=torch.Generator().manual_seed(SEED))
with torch.no_grad():
    predicted = moons(pool).argmax(-1)
start = torch.stack([pool[predicted == 1][:10], pool[predicted == 0][:10]], 1).reshape(20, 2)  # (B, 2)
batch_labels = torch.tensor([0, 1] * 10)  # groups (0, 1), (0, 1), ...
SHOWN = slice(0, 20)
ETAS = (0.1, 0.01, 0.001)
cmap = plt.get_cmap("tab10")
fig, axes = plt.subplots(2, len(ETAS), figsize=(3.8 * len(ETAS), 7.6), layout="constrained")
print(RUN)
for j, eta in enumerate(ETAS):
    for i, method in enumerate(("cake", "lake")):
        ax = axes[i, j]
        plot_decision_regions(moons, ax, extent=(-3, 3, -3, 3), num_classes=2, title=f"{method.upper()}, η = {eta:g}")
        path = trajectories(start.clone(), batch_labels, eta, TRAJECTORY_STEPS, method)
        for k in range(SHOWN.start, SHOWN.stop):
            ax.plot(path[:, k, 0], path[:, k, 1], color=cmap(int(batch_labels[k])), lw=1.0)
        ax.scatter(path[0, SHOWN, 0], path[0, SHOWN, 1], c="k", s=18, zorder=3)
        ax.scatter(path[-1, SHOWN, 0], path[-1, SHOWN, 1], c="k", s=30, marker="x", zorder=3)
        moved = (path[-1] - path[0]).norm(dim=1).median()
        correct = (moons(path[-1]).argmax(-1) == batch_labels).float().mean()
        print(f"η = {eta:<6g} {method.upper()}: median displacement after {TRAJECTORY_STEPS} steps {moved:.2f}, "
              f"on their class's side {correct:.0%}")
fig.suptitle(f"paths of a batch of 20 samples (dots: start, crosses: end); {RUN}", fontsize=9)
plt.show()

# %% [markdown]
# Colour is the sample's assigned class; every sample starts in the other class's region,
# where the cross-entropy gradient is large. So at all three step sizes most CAKE samples
# (top) reach their own side within the steps given (the printed shares count them). The
# step size decides what happens next. At $\eta = 0.1$ the steps are large enough to
# overshoot: samples zig-zag through the boundary region, held near it by their partners,
# and spread along it. At smaller $\eta$ they stop soon after crossing and travel less
# (compare the median displacements). A sample that starts on its own side gets only a
# weak gradient and, at small $\eta$, stays near its noise start; chapter 2 counts such
# samples by step size. LAKE
# (bottom) is the same drift plus noise, and at these batch sizes the noise is the larger
# part: its paths are random walks, wide at $\eta = 0.1$, short at $\eta = 0.001$, with
# cross-entropy only biasing them towards the correct side. This is the "different scales"
# of the method: one run contains samples from all of these regimes, each batch at its own
# step size.
#
# ## Summary
#
# - A batch is $G$ groups of $K$ samples with distinct classes; the contrastive term pairs
#   samples only inside a group.
# - The **classification** force pushes a sample into its class's region and fades with
#   confidence; the **contrastive** force pulls group partners together in logit space,
#   i.e. towards the boundary.
# - `cake_mini`'s losses match the reference scalings exactly: $K \cdot$ mean CE;
#   $\frac{K^2}{2}$ mean over the $(G, K, K, C)$ pair tensor $=$ sum over pairs $/ (G\,C)$;
#   TV as a sum of two mean absolute differences.
# - **Total variation** smooths pixel noise and, alone, flattens everything; it is a prior,
#   not a source of content.
# - Step sizes fall across batches (log-linear or cosine in the exponent); small steps
#   leave samples near their start, large steps move them onto the boundary, and under
#   LAKE the noise dominates more the smaller the step.
#
# ## Exercises
#
# 1. Change the layout cell to $K = C = 10$. How many contrastive pairs does a batch of 100
#    have, and how many did the batch of 40 with $K = 5$ have?
# 2. Load a trained teacher (chapter 4's digits CNN, or chapter 2's MLPs), synthesise one
#    batch with `steps=1`, and compare the sizes of the three *gradients*
#    ($w \cdot \nabla_x$ of each term) rather than the loss values. Which term dominates at
#    the reference weights?
# 3. In `tv_descent`, replace TV by the squared version (mean squared differences). How do the
#    frames change, and why do edges survive TV better than its squared cousin?
# 4. Add a data-fidelity term $\frac{\lambda}{2}\|x - x_\text{noisy}\|^2$ to `tv_descent`
#    (the Rudin–Osher–Fatemi denoising model). Find a $\lambda$ that denoises without
#    flattening.
# 5. Run `trajectories` with a batch of 2 (one group) instead of 20 at $\eta = 0.1$. Why do
#    the CAKE samples now jump around, and which step size gives the batch-of-20 behaviour?
