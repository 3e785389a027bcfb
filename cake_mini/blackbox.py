"""Teachers without gradients: CAKE through a black box that only answers queries.

CAKE moves samples along ``dL/dx = J(x)^T dL/dz``, the teacher's input Jacobian ``J``
applied to the gradient ``v = dL/dz`` of the loss on its logits ``z``. A random forest, a
quantised model or a prediction API gives probabilities but no Jacobian.
:class:`BlackBoxTeacher` wraps such a ``predict_proba(x) -> p`` as a module returning
``z = log p``, which serves as logits (``softmax(log p) = p``), and estimates only the
vector-Jacobian product, per sample, from antithetic Gaussian queries:

    J(x)^T v  ~=  1 / (2 sigma n) * sum_k u_k <v, z(x + sigma u_k) - z(x - sigma u_k)>,

``u_k ~ N(0, I)``, ``k = 1..n`` (``queries``). It is the exact gradient of the teacher
smoothed with ``N(0, sigma^2 I)``, unbiased for a linear teacher. Everything else in the
loss (the classification and contrastive terms on ``z``, total variation on ``x``) stays
exact autograd. Each step costs ``N`` queries forward and ``2 n N`` backward.

>>> import torch
>>> W = torch.randn(3, 4)
>>> teacher = BlackBoxTeacher(lambda x: (x @ W.T).softmax(-1), queries=2)
>>> z = teacher(torch.randn(5, 4, requires_grad=True))
>>> z.shape, teacher.queries_used
(torch.Size([5, 3]), 5)
>>> z.sum().backward(); teacher.queries_used
25
"""
from __future__ import annotations

import hashlib
import math
import pickle
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .checkpoint import fingerprint


class BlackBoxTeacher(nn.Module):
    """A teacher known only through ``predict_proba``, with a gradient estimated from queries.

    Args:
        predict_proba: ``x (N, *input_shape) -> p (N, C)``, probabilities (rows >= 0 summing
            to 1) as a tensor or anything ``torch.as_tensor`` takes; never differentiated.
        queries: ``n``, random directions per sample and backward pass (``2 n`` queries).
        sigma: smoothing scale, in input units per coordinate. Piecewise-constant teachers
            (trees) need it large enough for perturbations to cross their thresholds.
        seed: picks the directions, together with each sample's values.
        eps: probabilities are clamped to ``eps`` before the log.
        max_batch: most inputs sent to ``predict_proba`` in one call.
        name: shown in ``repr``.

    ``forward(x)`` returns ``log(clamp(p, eps))``, shape ``(N, C)``. The module has no
    parameters and starts in eval mode, as :func:`cake_mini.synthesize` requires.
    ``queries_used`` counts the inputs sent to the black box (forward and backward).
    """

    def __init__(self, predict_proba: Callable[[Tensor], Any], *, queries: int = 8, sigma: float = 0.1,
                 seed: int = 0, eps: float = 1e-6, max_batch: int = 65_536, name: str | None = None):
        super().__init__()
        if queries < 1:
            raise ValueError(f"queries must be >= 1 (directions per sample and step), got {queries}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0 (the smoothing scale of the queries), got {sigma}")
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.predict_proba = predict_proba
        self.queries, self.sigma, self.seed, self.eps = int(queries), float(sigma), int(seed), float(eps)
        self.max_batch, self.name = int(max_batch), name
        self.queries_used = 0
        self.eval()

    @classmethod
    def from_sklearn(cls, estimator: Any, input_shape: tuple[int, ...], **kwargs: Any) -> "BlackBoxTeacher":
        """Wrap a fitted scikit-learn classifier trained on flattened inputs of ``input_shape``.

        Its ``classes_`` must be ``0..C-1`` so that column ``c`` of ``predict_proba`` is class ``c``.
        """
        return cls(SklearnProba(estimator, input_shape), name=kwargs.pop("name", type(estimator).__name__),
                   **kwargs)

    def reset_queries(self) -> None:
        self.queries_used = 0

    def forward(self, x: Tensor) -> Tensor:
        return _BlackBoxLogits.apply(x, self)

    def log_proba(self, x: Tensor) -> Tensor:
        """``log(clamp(p, eps))`` of ``x (M, *input_shape)`` in chunks of ``max_batch``, counted, no graph."""
        with torch.no_grad():
            return torch.cat([self._query(chunk) for chunk in x.detach().split(self.max_batch)])

    def _query(self, x: Tensor) -> Tensor:
        p = self.predict_proba(x)
        p = (p if isinstance(p, Tensor) else torch.as_tensor(p)).to(x.device, torch.float32)
        self.queries_used += len(x)
        if p.ndim != 2 or len(p) != len(x):
            raise ValueError(f"the black box must return probabilities of shape (N, C) = ({len(x)}, C) "
                             f"for {len(x)} inputs, got {tuple(p.shape)}")
        if not torch.isfinite(p).all() or (p < -1e-6).any() or ((p.sum(-1) - 1).abs() > 1e-3).any():
            raise ValueError("the black box must return probabilities (each row >= 0 and summing to 1), "
                             "e.g. the softmax of logits; got values outside [0, 1] or rows not summing to 1")
        return p.clamp_min(self.eps).log()

    def directions(self, x: Tensor) -> Tensor:
        """The ``n`` directions of each sample, ``(N, n, *input_shape)``, a function of ``(seed, x_i)`` only.

        Seeding from the sample's values, not from a global generator or a call counter,
        makes a resumed run (``checkpoint_dir``) and one with other ``parallel_batches``
        draw the same directions for the same sample: both see the same ``x_i`` but call
        the teacher in another order or grouping. The directions are drawn on the CPU, so
        CPU and CUDA draw the same ones. (If the black box's answer for an input depends on
        the rest of its batch, e.g. through float rounding, a sample can change in its last
        bit, and with it all its later directions: equally good samples, not equal ones.)
        """
        flat = x.detach().to("cpu", torch.float32).contiguous().view(len(x), -1).numpy()
        out = torch.empty((len(x), self.queries, *x.shape[1:]))
        for i, row in enumerate(flat):
            digest = hashlib.sha256(self.seed.to_bytes(8, "little", signed=True) + row.tobytes()).digest()
            g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
            torch.randn(out.shape[1:], generator=g, out=out[i])
        return out.to(x.device)

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """The estimate of ``J(x)^T v`` for ``x (N, *input_shape)``, ``v (N, C)``: shape of ``x``."""
        n, sigma = self.queries, self.sigma
        u = self.directions(x)  # (N, n, *S)
        pm = torch.cat([u, -u], 1)  # (N, 2n, *S): +u_k then -u_k
        z = self.log_proba((x.detach().unsqueeze(1) + sigma * pm).flatten(0, 1)).view(len(x), 2 * n, -1)
        coef = ((z[:, :n] - z[:, n:]) * v.float().unsqueeze(1)).sum(-1) / (2 * sigma * n)  # (N, n)
        return (coef.view(*coef.shape, *(1,) * (x.ndim - 1)) * u).sum(1).to(x.dtype)

    def cake_fingerprint(self) -> str:
        """Identity for checkpoints: the settings and the wrapped black box's fingerprint."""
        settings = f"BlackBoxTeacher|{self.queries}|{self.sigma!r}|{self.seed}|{self.eps!r}|"
        return hashlib.sha256((settings + fingerprint(self.predict_proba)).encode()).hexdigest()

    def extra_repr(self) -> str:
        name = f"{self.name}, " if self.name else ""
        return f"{name}queries={self.queries}, sigma={self.sigma:g}, seed={self.seed}"


class _BlackBoxLogits(torch.autograd.Function):
    """``z = log p(x)`` forward; backward returns the query estimate of ``J^T v``."""

    @staticmethod
    def forward(ctx, x: Tensor, box: BlackBoxTeacher) -> Tensor:
        ctx.save_for_backward(x)
        ctx.box = box
        return box.log_proba(x)

    @staticmethod
    def backward(ctx, v: Tensor) -> tuple[Tensor | None, None]:
        (x,) = ctx.saved_tensors
        return ctx.box.vjp(x, v) if ctx.needs_input_grad[0] else None, None


class SklearnProba:
    """``predict_proba`` of a fitted scikit-learn classifier as a torch callable.

    Flattens ``x (N, *input_shape)`` to a float64 array ``(N, D)`` and returns the estimator's
    probabilities as float32 ``(N, C)`` on ``x``'s device.
    """

    def __init__(self, estimator: Any, input_shape: tuple[int, ...]):
        import numpy as np

        classes = getattr(estimator, "classes_", None)
        if classes is None or not hasattr(estimator, "predict_proba"):
            raise ValueError(f"{type(estimator).__name__} must be a fitted classifier with predict_proba "
                             "and classes_; call estimator.fit(X, y) first")
        if not np.array_equal(np.asarray(classes), np.arange(len(classes))):
            raise ValueError(f"the estimator's classes_ must be 0..C-1 so that column c is class c, got "
                             f"{list(classes)[:12]}; fit it on labels 0..C-1 (e.g. LabelEncoder)")
        features = getattr(estimator, "n_features_in_", None)
        if features is not None and features != math.prod(input_shape):
            raise ValueError(f"the estimator expects {features} features but input_shape {tuple(input_shape)} "
                             f"has {math.prod(input_shape)}")
        self.estimator, self.input_shape = estimator, tuple(input_shape)

    def __call__(self, x: Tensor) -> Tensor:
        flat = x.detach().reshape(len(x), -1).to("cpu", torch.float64).numpy()
        return torch.as_tensor(self.estimator.predict_proba(flat), dtype=torch.float32).to(x.device)

    def cake_fingerprint(self) -> str:
        return hashlib.sha256(pickle.dumps(self.estimator) + repr(self.input_shape).encode()).hexdigest()
