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
# # Teachers without gradients: black-box CAKE
#
# Every chapter so far took gradient steps on the inputs *through* the teacher: CAKE needs
# $\nabla_x \mathcal{L}$, and autograd computed it. Many classifiers you might want to copy
# do not offer that:
#
# - **Trees.** A random forest or gradient-boosted trees are piecewise constant: their
#   gradient is zero almost everywhere and undefined at the thresholds.
# - **Quantised or compiled models.** An int8 network on an accelerator, or an exported
#   graph, answers queries but has no backward pass you can call.
# - **Prediction APIs.** A service returns class probabilities for the inputs you send, and
#   nothing else.
#
# All of them still answer the one question CAKE asks: *what are your class probabilities
# for this input?* This chapter estimates the missing gradient from such answers alone,
# with a budget of queries, and then distils a scikit-learn random forest into a CNN
# without a single real image. You will see how good the estimate is as a function of the
# number of queries, what a query budget buys in student accuracy, and where the approach
# runs out.

# %%
# Setup: on Colab (or anywhere cake_mini is missing) install it first.
try:
    import cake_mini
except ImportError:
    # %pip install -q cake_mini scikit-learn
    import cake_mini

import json
import os
import statistics
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from sklearn.ensemble import RandomForestClassifier
from torch.nn.functional import cosine_similarity
from torch.utils.data import TensorDataset

import cake_mini.sizes
from cake_mini import DistillConfig, SynthesisConfig, distill, evaluate, synthesize, train_classifier
from cake_mini.blackbox import BlackBoxTeacher
from cake_mini.data import load_dataset
from cake_mini.experiments import EXPERIMENTS
from cake_mini.models import make_model
from cake_mini.viz import image_grid

SEED = 0
torch.manual_seed(SEED)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HARDWARE = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")

SIZE = cake_mini.sizes.get_size()
TEACHER_EPOCHS = 30  # about 5 s on a CPU: the same good CNN teacher at every size
NUM_SAMPLES = cake_mini.sizes.pick(smoke=300, default=2_000, paper=5_000)
STEPS = cake_mini.sizes.pick(smoke=10, default=30, paper=50)
STUDENT_EPOCHS = cake_mini.sizes.pick(smoke=30, default=60, paper=60)
QUERIES = 4  # directions per sample and step in the main run
QUERY_SWEEP = cake_mini.sizes.pick(smoke=(1, 4), default=(1, 4, 16, 64), paper=(1, 4, 16, 64, 256))
COSINE_QUERIES = cake_mini.sizes.pick(smoke=(1, 4, 16, 64), default=(1, 4, 16, 64, 256, 1024),
                                      paper=(1, 4, 16, 64, 256, 1024, 4096))
SIGMA = 0.1  # smoothing scale, in pixel units of the normalised digits ([-1, 1])
PROGRESS = SIZE != "smoke"
RUN = f"size={SIZE}, seed={SEED}, device={HARDWARE}"
ROOT = Path("..") if Path("../pyproject.toml").exists() else Path(".")
RESULTS_DIR = Path(os.environ.get("CAKE_MINI_RESULTS", ROOT / "benchmarks" / "results"))
print(RUN, f"| {NUM_SAMPLES} samples x {STEPS} steps, students {STUDENT_EPOCHS} epochs, sweep {QUERY_SWEEP}")

# %% [markdown]
# ```{note}
# At `CAKE_MINI_SIZE=smoke` (how CI builds this book) the synthesis runs a few hundred
# samples for a few steps and the students train briefly: the accuracies below then only
# show that the code runs. The measured results at a meaningful size are in the table at
# the end, read from `benchmarks/results/black-box-*.json`.
# ```
#
# ## Estimating a gradient from queries
#
# Write $z(x) \in \mathbb{R}^C$ for the teacher's logits. CAKE's loss $\mathcal{L}$ depends
# on $x$ through $z(x)$ (classification and contrastive terms) and directly (total
# variation). The chain rule splits the gradient:
#
# $$
# \nabla_x \mathcal{L} = J(x)^\top v + \nabla_x \mathcal{L}_\text{TV},
# \qquad v = \frac{\partial \mathcal{L}}{\partial z}, \quad J(x) = \frac{\partial z}{\partial x}.
# $$
#
# Everything here is cheap and exact except the vector-Jacobian product $J^\top v$: $v$
# is the gradient of the loss with respect to the $C$ logits, which autograd computes
# without the teacher. So we only have to estimate the gradient of the *scalar* function
# $h(x) = \langle v, z(x)\rangle$ with $v$ held fixed.
#
# **Gaussian smoothing.** Replace $h$ by its average over a small Gaussian blur,
# $h_\sigma(x) = \mathbb{E}_{u \sim \mathcal{N}(0, I)}\, h(x + \sigma u)$. Its gradient
# needs no derivative of $h$ at all (Stein's lemma: $\mathbb{E}[u\, g(u)] = \mathbb{E}[\nabla g(u)]$
# for a standard Gaussian $u$):
#
# $$
# \nabla h_\sigma(x) = \frac{1}{\sigma}\, \mathbb{E}\big[u\, h(x + \sigma u)\big]
#   = \frac{1}{2\sigma}\, \mathbb{E}\big[u\,\big(h(x + \sigma u) - h(x - \sigma u)\big)\big].
# $$
#
# The second form, *antithetic* pairs $\pm u$, has the same mean (since $u$ and $-u$ are
# equally likely) and a much smaller variance: the constant part $h(x)$ cancels. With
# $n$ random directions per sample this gives the estimate
#
# $$
# \widehat{J^\top v} = \frac{1}{2 \sigma n} \sum_{k=1}^{n} u_k\,
#   \big\langle v,\; z(x + \sigma u_k) - z(x - \sigma u_k) \big\rangle ,
# $$
#
# which costs $2n$ queries per sample and step, plus one for $z(x)$ itself. For a linear
# teacher $z = Wx$ the bracket is exactly $2\sigma\, u_k^\top W^\top v$, the estimate is
# $\frac{1}{n}\sum_k u_k u_k^\top W^\top v$, and its mean is $W^\top v$: unbiased, for any
# $\sigma$. Its error shrinks like $\sqrt{(D + 1) / n}$ relative to the true gradient,
# with $D$ the input dimension, so the cosine between estimate and truth is about
# $\sqrt{n / (n + D + 1)}$. For a curved or piecewise-constant teacher the estimate is the
# gradient of the *smoothed* teacher; $\sigma$ sets how far the queries look. A tree
# ensemble needs a $\sigma$ large enough for the perturbations to cross some of its
# thresholds, else every difference is zero.
#
# **Logits from probabilities.** A black box gives probabilities $p$, not logits. We use
# $z = \log p$ (clamped at $10^{-6}$): $\mathrm{softmax}(\log p) = p$, so the
# classification term and the soft labels are unchanged. The contrastive term, which
# compares logit vectors, now compares log-probabilities: these are the logits shifted per
# sample so that they normalise, the same information without the free offset.
#
# `BlackBoxTeacher(predict_proba, queries=n, sigma=σ)` wraps any function from inputs to
# probabilities as a module returning $\log p$. Its backward pass computes the estimate
# above through a custom `torch.autograd.Function`, so `synthesize` runs unchanged and the
# total variation term stays exact. The directions of each sample are drawn from a
# generator seeded by the sample's values, so a run is reproducible, and resuming it or
# grouping its batches differently draws the same directions. `queries_used` counts every
# input sent to the black box.
#
# ## How good is the estimate?
#
# To measure the error we need a teacher whose true gradient we know: the digits CNN of
# chapter 4, wrapped as a black box through its softmax. For noise inputs and the
# classification loss's $v$ towards a random class, we compare the estimate with
# autograd's exact $J^\top v$ as the number of directions grows.

# %%
train_set, test_set = load_dataset("digits", "train"), load_dataset("digits", "test")
INPUT_SHAPE, NUM_CLASSES = tuple(train_set.tensors[0].shape[1:]), 10
EXP = EXPERIMENTS["digits"]


def new_cnn(width, seed):
    torch.manual_seed(seed)
    return make_model("cnn", NUM_CLASSES, in_channels=1, image_size=8, width=width).to(DEVICE)


cnn = new_cnn(32, SEED)
train_classifier(cnn, train_set, DistillConfig(epochs=TEACHER_EPOCHS, seed=SEED, **EXP.teacher_recipe),
                 device=DEVICE, progress=PROGRESS)
cnn.eval()
cnn_acc = evaluate(cnn, test_set)
print(RUN, f"| digits CNN teacher: test accuracy {cnn_acc:.1%}")

x = torch.randn((64, *INPUT_SHAPE), generator=torch.Generator().manual_seed(SEED), device=DEVICE)
target = torch.randint(0, NUM_CLASSES, (64,), generator=torch.Generator().manual_seed(SEED + 1)).to(DEVICE)
with torch.no_grad():
    v = cnn(x).softmax(-1) - torch.nn.functional.one_hot(target, NUM_CLASSES)  # dCE/dz per sample


def vjp(teacher, x, v):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((teacher(x) * v).sum(), x)
    return g.flatten(1)


true = vjp(lambda q: cnn(q).log_softmax(-1), x, v)
dim = x[0].numel()
cosines = {}
for n in COSINE_QUERIES:
    box = BlackBoxTeacher(lambda q: cnn(q).softmax(-1), queries=n, sigma=SIGMA, seed=SEED)
    cosines[n] = cosine_similarity(vjp(box, x, v), true).tolist()
print(RUN)
print(f"{'queries n':>10} {'2n per sample':>14} {'median cosine':>14} {'linear theory':>14}")
for n, c in cosines.items():
    print(f"{n:>10} {2 * n:>14} {statistics.median(c):>14.2f} {(n / (n + dim + 1)) ** 0.5:>14.2f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ns = list(cosines)
ax.plot(ns, [statistics.median(c) for c in cosines.values()], "o-", label="digits CNN (median over 64 inputs)")
ax.fill_between(ns, [sorted(c)[len(c) // 4] for c in cosines.values()],
                [sorted(c)[3 * len(c) // 4] for c in cosines.values()], alpha=0.2, label="quartiles")
ax.plot(ns, [(n / (n + dim + 1)) ** 0.5 for n in ns], "k--", label=r"linear teacher, $\sqrt{n/(n+D+1)}$")
ax.set(xscale="log", xlabel="directions n per sample (2n queries)", ylabel="cosine(estimate, true)",
       ylim=(0, 1), title=f"estimated vs true J^T v, sigma={SIGMA}, D={dim}\n{RUN}")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Read the curve against the dashed line. For a linear teacher the cosine is set by the
# ratio of directions to input dimensions alone ($D = 64$ here); the printed table gives
# the measured medians next to it. The CNN is not linear at the scale $\sigma$ looks at,
# so its estimate is the gradient of a smoothed CNN, which the exact gradient only
# approximates; the printed medians say how far below the linear-teacher line this puts
# the measured cosine at each $n$. A single direction gives an estimate barely aligned with
# the truth. Yet CAKE may not need a precise gradient: it takes
# many small steps, and the errors of different steps are independent, so they partly
# average out, much as in stochastic gradient descent. Whether that suffices is a question
# for the student's accuracy, next.
#
# ## A random forest, copied without data
#
# The teacher now has no gradient at all: a scikit-learn random forest of 100 trees
# trained on the flattened digits. `BlackBoxTeacher.from_sklearn` flattens each query,
# calls `predict_proba` and returns the probabilities as a tensor; it checks that the
# forest's classes are $0, \dots, 9$ so that column $c$ is class $c$. The synthesis
# settings are the digits settings of chapter 4.

# %%
forest = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)
forest.fit(train_set.tensors[0].flatten(1).numpy(), train_set.tensors[1].numpy())
forest_acc = float((forest.predict(test_set.tensors[0].flatten(1).numpy()) == test_set.tensors[1].numpy()).mean())
print(RUN, f"| random forest teacher: test accuracy {forest_acc:.1%}")

CONFIG = SynthesisConfig(num_samples=NUM_SAMPLES, steps=STEPS, seed=SEED, **EXP.synthesis)
RECIPE = DistillConfig(epochs=STUDENT_EPOCHS, **EXP.student_recipe)


def student_accuracy(train, seed=SEED):
    student = new_cnn(16, seed)
    distill(student, train, RECIPE.replace(seed=seed), device=DEVICE, progress=PROGRESS)
    return evaluate(student, test_set)


def black_box_run(box, config=CONFIG):
    """Synthesise through ``box``, distil a student; accuracy, queries used, the samples."""
    box.reset_queries()
    t0 = time.perf_counter()
    synthetic = synthesize(box, INPUT_SHAPE, NUM_CLASSES, config, device=DEVICE, progress=PROGRESS)
    return dict(accuracy=student_accuracy(synthetic), queries=box.queries_used, samples=synthetic,
                seconds=time.perf_counter() - t0)


def noise_run(box, n=NUM_SAMPLES):
    box.reset_queries()
    x = torch.randn((n, *INPUT_SHAPE), generator=torch.Generator().manual_seed(SEED))
    soft = box.log_proba(x.to(DEVICE)).softmax(-1).cpu()
    return dict(accuracy=student_accuracy(TensorDataset(x, soft)), queries=box.queries_used)


forest_box = BlackBoxTeacher.from_sklearn(forest, INPUT_SHAPE, queries=QUERIES, sigma=SIGMA, seed=SEED)
main = black_box_run(forest_box)
forest_noise = noise_run(forest_box)
synthetic = main["samples"]
agree = (synthetic.soft_labels.argmax(-1) == synthetic.labels).float().mean()
print(RUN)
print(f"black-box CAKE through the forest: {len(synthetic)} samples x {STEPS} steps, n={QUERIES}: "
      f"{main['queries']:,} forest queries, {main['seconds']:.0f} s with the student")
print(f"forest's top class = assigned class for {agree:.0%} of the samples; "
      f"median forest confidence {synthetic.soft_labels.max(-1).values.median():.2f}")
print(f"student cnn-16 on black-box CAKE samples: {main['accuracy']:.1%}; "
      f"on forest-labelled noise ({forest_noise['queries']:,} queries): {forest_noise['accuracy']:.1%}; "
      f"forest {forest_acc:.1%}")
fig = image_grid(synthetic.x[:200], synthetic.labels[:200], nrow=4, scale="clip",
                 title=f"black-box CAKE samples of the random forest (n={QUERIES}); {RUN}")
plt.show()

# %% [markdown]
# The forest was queried only through `predict_proba`: the printed count is every input it
# answered, forward and backward. The samples (columns are the assigned classes, $[-1, 1]$
# as black to white) come from noise pushed by estimated gradients; the printed agreement
# says how many of them the forest ends up putting into their assigned class, and its
# median confidence how sure it is about them. Compare the two student accuracies: the
# noise student saw the same number of samples, each labelled by one query, so the
# difference is what the synthesis queries bought. At `smoke` size both are close to
# chance and say nothing.
#
# ## What a query budget buys
#
# The cost of black-box CAKE is counted in queries: $N (1 + 2n)$ per step for $N$ samples.
# For both teachers, the forest and the CNN behind its softmax, we sweep $n$ and plot the
# student's accuracy against the queries spent. For the CNN, the white-box run of plain
# CAKE (exact gradients, the same samples and steps) is the reference line.

# %%
sweep = {"forest": {}, "cnn": {}}
cnn_proba = lambda q: cnn(q).softmax(-1)
t0 = time.perf_counter()
for n in QUERY_SWEEP:
    sweep["forest"][n] = black_box_run(BlackBoxTeacher.from_sklearn(forest, INPUT_SHAPE, queries=n, sigma=SIGMA,
                                                                    seed=SEED))
    sweep["cnn"][n] = black_box_run(BlackBoxTeacher(cnn_proba, queries=n, sigma=SIGMA, seed=SEED))
white = student_accuracy(synthesize(cnn, INPUT_SHAPE, NUM_CLASSES, CONFIG, device=DEVICE, progress=PROGRESS))
cnn_noise = noise_run(BlackBoxTeacher(cnn_proba))
print(RUN, f"| {time.perf_counter() - t0:.0f} s for the sweep")
print(f"{'teacher':>8} {'n':>4} {'queries':>12} {'student':>8}")
for name, runs in sweep.items():
    for n, r in runs.items():
        print(f"{name:>8} {n:>4} {r['queries']:>12,} {r['accuracy']:>8.1%}")
print(f"{'forest':>8} noise {forest_noise['queries']:>10,} {forest_noise['accuracy']:>8.1%}")
print(f"{'cnn':>8} noise {cnn_noise['queries']:>10,} {cnn_noise['accuracy']:>8.1%}")
print(f"{'cnn':>8} white-box CAKE {white:>11.1%}   (teachers: forest {forest_acc:.1%}, cnn {cnn_acc:.1%})")

fig, ax = plt.subplots(figsize=(6, 3.8))
for (name, runs), color in zip(sweep.items(), ("C0", "C1")):
    ax.plot([r["queries"] for r in runs.values()], [100 * r["accuracy"] for r in runs.values()], "o-",
            color=color, label=f"{name}, black-box CAKE")
    for n, r in runs.items():
        ax.annotate(f"n={n}", (r["queries"], 100 * r["accuracy"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    baseline = forest_noise if name == "forest" else cnn_noise
    ax.plot([baseline["queries"]], [100 * baseline["accuracy"]], "s", color=color, label=f"{name}, labelled noise")
ax.axhline(100 * white, color="C1", ls="--", label="cnn, white-box CAKE")
ax.set(xscale="log", xlabel="teacher queries (forward and backward)", ylabel="student test accuracy (%)",
       title=f"student accuracy vs query budget\n{RUN}, {NUM_SAMPLES} samples x {STEPS} steps")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# Each point is one synthesis and one student; the $x$ axis counts every query, so the
# points of a curve lie about a factor $(1 + 2n_2) / (1 + 2n_1)$ apart. Read the CNN curve
# against its dashed white-box line first: it tells whether estimated gradients, at this
# budget, lose anything against exact ones. Then the forest curve against its noise square:
# that is what querying around each sample, rather than labelling random inputs, buys for
# a teacher that has no gradient at all. One seed per point at this size; the table below
# has several.
#
# ## The measured table
#
# `benchmarks/black_box.py` runs these rows for three seeds on a CPU and records each run's
# queries, accuracy, time and settings in `benchmarks/results/black-box-<size>-<hardware>.json`.
# The cell below reads every such file that is present.

# %%
def load_results(directory):
    found = []
    for path in sorted(Path(directory).glob("black-box-*.json")):
        try:
            found.append((path.name, json.loads(path.read_text(encoding="utf8"))))
        except (OSError, ValueError) as err:
            print(f"skipping {path.name}: {err}")
    return found


def summary(data):
    """{row: (mean accuracy, std, seeds, queries per run)} of one results file."""
    out = {}
    for name, entry in data.get("rows", {}).items():
        accs = [r["student_accuracy"] for r in entry.get("runs", [])]
        if accs:
            out[name] = (statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, len(accs),
                         entry["runs"][0].get("teacher_queries"), entry.get("description", ""))
    return out


RESULTS = load_results(RESULTS_DIR)
if not RESULTS:
    print(f"No measured results: no black-box-*.json in {RESULTS_DIR.resolve()}. Make one from the "
          "repository root with\n    python benchmarks/black_box.py --size cpu")
for file_name, data in RESULTS:
    s = data.get("settings", {})
    print(f"{file_name}: size {data.get('size')}, {data.get('hardware_slug')}, digits {s.get('num_samples')} "
          f"samples x {s.get('steps')} steps, sigma {data.get('sigma')}; teachers: "
          + ", ".join(f"{k} {v['test_accuracy']:.1%}" for k, v in data.get("teachers", {}).items()))
    print(f"  {'row':<18} {'queries':>12} {'student (mean ± std)':>22} {'seeds':>6}")
    for name, (mean, std, seeds, queries, _) in summary(data).items():
        q = "gradients" if queries is None else f"{queries:,}"
        print(f"  {name:<18} {q:>12} {100 * mean:>15.1f} ± {100 * std:<4.1f} {seeds:>6}")

# %% [markdown]
# The file states its own size, seeds and machine; the lines below compare its rows
# directly, computed from the file rather than written by hand.

# %%
for file_name, data in RESULTS:
    rows = summary(data)
    acc = {name: r[0] for name, r in rows.items()}
    print(f"{file_name} (size {data.get('size')}):")
    if "cnn-white" in acc:
        black = {n: a for n, a in acc.items() if n.startswith("cnn-black-")}
        if black:
            best = max(black, key=black.get)
            print(f"  digits CNN: white-box CAKE {acc['cnn-white']:.1%}; black-box {min(black.values()):.1%} "
                  f"to {max(black.values()):.1%} (best {best}); "
                  f"labelled noise {acc.get('cnn-noise', float('nan')):.1%}")
        if "cnn-white-logp" in acc:
            print("  digits CNN, white-box CAKE on log(clamp(softmax)) (the black box's objective, exact gradients): "
                  f"{acc['cnn-white-logp']:.1%}")
    forest_rows = {n: a for n, a in acc.items() if n.startswith("forest-black-")}
    if forest_rows:
        best = max(forest_rows, key=forest_rows.get)
        print(f"  random forest: black-box CAKE {min(forest_rows.values()):.1%} to {max(forest_rows.values()):.1%} "
              f"(best {best}); labelled noise {acc.get('forest-noise', float('nan')):.1%}; "
              f"forest itself {data['teachers']['forest']['test_accuracy']:.1%}")

# %% [markdown]
# What to take from the comparison, with the numbers above:
#
# - **CNN, black box vs white box.** The CNN rows say whether a query-estimated gradient is
#   enough for CAKE on this teacher, and how the student's accuracy moves with the number
#   of directions. The black-box rows also run CAKE on $\log p$ instead of the raw logits
#   (the contrastive term changes, and the clamp at $10^{-6}$ bounds it); the
#   `cnn-white-logp` row runs that objective with exact gradients, so the gap between
#   `cnn-white` and `cnn-white-logp` is the objective's doing and the gap between
#   `cnn-white-logp` and the `cnn-black-*` rows the estimator's.
# - **Forest vs CNN.** Both teachers are about equally accurate on real digits (printed
#   above), so any large gap between the forest rows and the CNN rows is not about the
#   teacher's quality on data. A likely reason: a forest is shaped by its training data
#   only near that data; off it, its answer follows axis-aligned thresholds that carry
#   little about digits, and CAKE's samples lie off the data (chapter 4). The printed
#   agreement and confidence of the forest on its samples, further up, point the same
#   way. Compare the forest rows with each other too: if more directions (more exact
#   gradients) do not raise the student's accuracy, the limit is what the forest says
#   about such inputs, not the gradient estimate.
# - **Cost.** Every direction costs two queries per sample and step, so the query axis
#   spans two orders of magnitude between $n = 1$ and $n = 64$. Labelled noise costs one
#   query per sample.
#
# ## Summary
#
# - CAKE only needs $J^\top v$, one vector-Jacobian product per sample and step, and that
#   can be estimated from $2n$ queries with antithetic Gaussian directions: unbiased for
#   linear teachers, the gradient of a smoothed teacher otherwise.
# - `BlackBoxTeacher` wraps any `predict_proba` (a forest, a quantised model, an API) as a
#   module whose backward pass is this estimate; `synthesize`, `distill` and checkpointing
#   work unchanged, and `queries_used` counts the cost.
# - The estimate's quality is set by directions per input dimension; how much of it CAKE
#   needs, and what a forest's answers off its training data are worth to a student, the
#   query-budget curve and the measured table say for this teacher and budget.
#
# ## Exercises
#
# 1. Change `SIGMA` for the forest to 0.03 and 0.3. How does the agreement of the samples
#    change, and the student? Why does a tree ensemble punish a $\sigma$ that is too small?
# 2. Wrap the CNN as `BlackBoxTeacher(lambda q: cnn(q).softmax(-1).round(decimals=2))`, an
#    API that rounds its answers. What does rounding do to the differences
#    $z(x + \sigma u) - z(x - \sigma u)$?
# 3. Run plain white-box CAKE on the black box's objective with exact gradients,
#    `lambda q: cnn(q).softmax(-1).clamp_min(1e-6).log()`, at this chapter's size and
#    compare with the `cnn-white-logp` row of the table. Then drop the clamp
#    (`cnn(q).log_softmax(-1)`): what happens to the contrastive term when a sample's
#    log-probabilities are unbounded below?
# 4. Give the noise baseline as many queries as black-box CAKE with $n = 4$ spends
#    (`noise_run(box, n=...)`). Which is the better use of a budget?
