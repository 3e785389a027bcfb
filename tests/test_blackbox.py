"""BlackBoxTeacher: the query estimate of J^T v, its determinism, its query count, its errors."""
import pytest
import torch
from torch import Tensor, nn
from torch.nn.functional import cosine_similarity

import cake_mini as cm
from cake_mini.blackbox import BlackBoxTeacher
from cake_mini.checkpoint import fingerprint
from cake_mini.models import make_model


pytestmark = pytest.mark.usefixtures("one_thread")


def _linear(d: int = 12, c: int = 5):
    """A softmax-linear teacher, p = softmax(W x).

    log p = W x - logsumexp(W x), so for a v whose rows sum to 0 (as dL/dz of the CAKE
    classification loss does) <v, log p> = <v, W x> is linear in x and J^T v = W^T v.
    """
    W = 0.3 * torch.randn(c, d, generator=torch.Generator().manual_seed(0))  # p >> eps: no clamping
    return W, lambda x: (x.flatten(1) @ W.T).softmax(-1)


def _estimate(box: BlackBoxTeacher, x: Tensor, v: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((box(x) * v).sum(), x)
    return g


def _true_vjp(f, x: Tensor, v: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((f(x).log() * v).sum(), x)
    return g


def test_linear_teacher_estimate_converges_and_is_unbiased():
    torch.manual_seed(0)
    W, f = _linear()
    x, v = torch.randn(8, 3, 4), torch.randn(8, 5)
    v = v - v.mean(-1, keepdim=True)
    true = _true_vjp(f, x, v).flatten(1)
    torch.testing.assert_close(true, (v @ W).flatten(1))
    cos = {n: cosine_similarity(_estimate(BlackBoxTeacher(f, queries=n, sigma=0.5), x, v).flatten(1), true).mean()
           for n in (1, 16, 512)}
    assert cos[1] < cos[16] < cos[512] and cos[512] > 0.95, cos
    # unbiased: the mean of single-query estimates over many seeds approaches the truth
    mean = torch.stack([_estimate(BlackBoxTeacher(f, queries=1, sigma=0.5, seed=s), x, v)
                        for s in range(2000)]).mean(0).flatten(1)
    assert cosine_similarity(mean, true).min() > 0.95
    assert (mean - true).norm() / true.norm() < 0.2


def test_smooth_network_estimate_matches_autograd():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    f = lambda x: net(x).softmax(-1)
    x, v = torch.randn(6, 10), torch.randn(6, 4)
    true = _true_vjp(f, x, v)
    est = _estimate(BlackBoxTeacher(f, queries=1024, sigma=1e-2), x, v)
    assert cosine_similarity(est, true).min() > 0.9


def test_same_input_same_gradient_and_no_global_rng():
    _, f = _linear()
    box = BlackBoxTeacher(f, queries=4)
    x, v = torch.randn(5, 12), torch.randn(5, 5)
    torch.manual_seed(1)
    a = _estimate(box, x, v)
    state = torch.get_rng_state()
    b = _estimate(box, x, v)
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    # a sample's directions do not depend on the rest of its batch
    assert torch.equal(box.directions(x[2:3]), box.directions(x)[2:3])
    assert not torch.equal(_estimate(BlackBoxTeacher(f, queries=4, seed=1), x, v), a)


def test_queries_are_counted_exactly():
    _, f = _linear()
    box = BlackBoxTeacher(f, queries=3, max_batch=7)  # chunked calls count the same
    x = torch.randn(5, 12, requires_grad=True)
    z = box(x)
    assert box.queries_used == 5
    z.sum().backward()
    assert box.queries_used == 5 + 2 * 3 * 5
    with torch.no_grad():
        box(x)
    assert box.queries_used == 5 + 30 + 5
    box.reset_queries()
    assert box.queries_used == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_estimate():
    _, f = _linear()
    box = BlackBoxTeacher(f, queries=8)
    x, v = torch.randn(5, 12), torch.randn(5, 5)
    on_cpu = _estimate(box, x, v)
    W = _linear()[0].cuda()
    on_gpu = _estimate(BlackBoxTeacher(lambda q: (q.flatten(1) @ W.T).softmax(-1), queries=8), x.cuda(), v.cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- synthesis

CONFIG = cm.SynthesisConfig(num_samples=30, batch_size=10, steps=4, group_size=5, lr=0.5, lr_decades=1,
                            w_cls=1.0, w_contr=0.1, w_tv=0.1, precision="fp32", seed=2, parallel_batches=1)


def _tree_box(**kwargs):
    """A piecewise-constant teacher whose answer per input does not depend on its batch."""
    W = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    return BlackBoxTeacher(lambda x: (torch.einsum("nchw,kchw->nk", x.round(decimals=1), W)).softmax(-1),
                           **{"queries": 2, "sigma": 0.2, **kwargs})


def test_synthesize_is_deterministic_across_calls_grouping_and_resume(tmp_path):
    box = _tree_box()
    a = cm.synthesize(box, (2, 4, 4), 5, CONFIG, progress=False)
    b = cm.synthesize(box, (2, 4, 4), 5, CONFIG, progress=False)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x[:10], a.x[10:20])
    grouped = cm.synthesize(box, (2, 4, 4), 5, CONFIG.replace(parallel_batches=3), progress=False)
    torch.testing.assert_close(grouped.x, a.x, rtol=1e-5, atol=1e-5)
    first = cm.synthesize(box, (2, 4, 4), 5, CONFIG, progress=False, checkpoint_dir=tmp_path)
    box.reset_queries()
    again = cm.synthesize(box, (2, 4, 4), 5, CONFIG, progress=False, checkpoint_dir=tmp_path)
    assert torch.equal(first.x, a.x) and torch.equal(again.x, a.x)
    assert box.queries_used == 2  # only check_teacher's probe: every shard was reused
    with pytest.raises(ValueError, match="differs in: teacher"):
        cm.synthesize(_tree_box(queries=3), (2, 4, 4), 5, CONFIG, progress=False, checkpoint_dir=tmp_path)


def test_sklearn_end_to_end_and_fingerprints():
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from cake_mini.data import load_dataset

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    X, y = train.tensors[0].flatten(1).numpy(), train.tensors[1].numpy()
    forest = RandomForestClassifier(20, max_depth=8, random_state=0, n_jobs=1).fit(X, y)
    box = BlackBoxTeacher.from_sklearn(forest, (1, 8, 8), queries=2, sigma=0.3)
    config = cm.SynthesisConfig(num_samples=200, batch_size=100, steps=5, lr=0.1, lr_decades=1,
                                w_cls=1e2, w_contr=1.0, w_tv=1e3, seed=0)
    synthetic = cm.synthesize(box, (1, 8, 8), 10, config, progress=False)
    assert torch.isfinite(synthetic.x).all() and synthetic.x.shape == (200, 1, 8, 8)
    torch.testing.assert_close(synthetic.soft_labels.sum(-1), torch.ones(200))
    # check_teacher's 2-input probe, then per step 200 inputs forward + 2 x 2 per input backward,
    # then the final labels: nothing else (no layout probe) is sent to the black box
    assert box.queries_used == 2 + 5 * (200 + 2 * 2 * 200) + 200
    student = make_model("mlp", 10, in_features=64, hidden=64, depth=2)
    untrained = cm.evaluate(student, (synthetic.x.flatten(1), synthetic.soft_labels))
    cm.distill(student, (synthetic.x.flatten(1), synthetic.soft_labels),
               cm.DistillConfig(epochs=30, batch_size=50, lr=0.1), progress=False)
    learnt = cm.evaluate(student, (synthetic.x.flatten(1), synthetic.soft_labels))
    assert learnt > untrained + 0.3, (untrained, learnt)  # it learnt the forest's labels

    logistic = LogisticRegression(max_iter=200).fit(X, y)
    prints = {fingerprint(BlackBoxTeacher.from_sklearn(e, (1, 8, 8), queries=q))
              for e in (forest, logistic) for q in (2, 4)}
    assert len(prints) == 4
    assert fingerprint(box) == fingerprint(BlackBoxTeacher.from_sklearn(forest, (1, 8, 8), queries=2, sigma=0.3))


# ----------------------------------------------------------------------------- errors


def test_errors_say_what_is_wrong():
    _, f = _linear()
    with pytest.raises(ValueError, match="queries must be >= 1"):
        BlackBoxTeacher(f, queries=0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        BlackBoxTeacher(f, sigma=0.0)
    x = torch.randn(3, 12)
    with pytest.raises(ValueError, match=r"shape \(N, C\) = \(3, C\).*got \(5,\)"):
        BlackBoxTeacher(lambda q: torch.ones(5))(x)
    with pytest.raises(ValueError, match="return probabilities.*softmax of logits"):
        BlackBoxTeacher(lambda q: q[:, :5])(x)  # logits, not probabilities
    with pytest.raises(ValueError, match="return probabilities"):
        BlackBoxTeacher(lambda q: torch.full((len(q), 4), 0.5))(x)  # rows sum to 2


def test_sklearn_errors():
    pytest.importorskip("sklearn")
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(40, 4))
    with pytest.raises(ValueError, match=r"classes_ must be 0..C-1"):
        BlackBoxTeacher.from_sklearn(LogisticRegression().fit(X, np.repeat([1, 2, 3, 5], 10)), (4,))
    with pytest.raises(ValueError, match="fitted classifier"):
        BlackBoxTeacher.from_sklearn(LogisticRegression(), (4,))
    with pytest.raises(ValueError, match="expects 4 features"):
        BlackBoxTeacher.from_sklearn(LogisticRegression().fit(X, np.repeat([0, 1], 20)), (1, 3, 3))
