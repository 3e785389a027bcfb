"""The losses of CAKE, as pure functions.

Synthesis minimises, over the *inputs* ``x`` of a frozen teacher ``f``,

    L = w_cls * classification_loss + w_contr * contrastive_loss + w_tv * total_variation

(chapter 3 of the book takes each term apart). Distillation then trains the student
with :func:`soft_cross_entropy` against the teacher's softmax; :func:`kd_loss` is the
classic data-based KD objective of Hinton et al. (2015), for comparison (chapter 1).

Every function takes a ``reduction`` in ``{"mean", "sum", "none"}``. The scalings of the
authors' reference implementation are reproduced exactly and stated in each docstring.

References: Braun, Mundt, Kersting, "Deep Classifier Mimicry without Data Access",
AISTATS 2024 (arXiv:2306.02090).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "classification_loss",
    "contrastive_loss",
    "total_variation",
    "soft_cross_entropy",
    "kd_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_logits_labels(logits: Tensor, labels: Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must have shape (N,) = ({logits.shape[0]},) to match logits, "
            f"got shape {tuple(labels.shape)}"
        )


def classification_loss(
    logits: Tensor, labels: Tensor, group_size: int = 1, reduction: str = "mean"
) -> Tensor:
    r"""Cross-entropy that pushes each sample to its own class's side of the boundary.

    :math:`\ell_i = K \cdot \mathrm{CE}(y_i, f(x_i))`, where ``K = group_size``: the
    reference implementation scales the mean cross-entropy by the number of classes per
    group. With ``group_size=1`` it is plain cross-entropy.

    Args:
        logits: teacher logits, shape :math:`(N, C)`.
        labels: class indices, shape :math:`(N,)`, values in :math:`[0, C)`.
        group_size: the scale :math:`K` (distinct classes per group).
        reduction: ``"mean"`` (the reference value), ``"sum"`` or ``"none"`` (shape :math:`(N,)`).

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(classification_loss(logits, torch.tensor([0, 1])).item(), 4)
        0.1269
        >>> round(classification_loss(logits, torch.tensor([0, 1]), group_size=2).item(), 4)
        0.2539
    """
    _check_logits_labels(logits, labels)
    per_sample = F.cross_entropy(logits, labels, reduction="none") * group_size
    return _reduce(per_sample, reduction)


def contrastive_loss(
    logits: Tensor, labels: Tensor, group_size: int, reduction: str = "mean"
) -> Tensor:
    r"""Pull pairs of samples of different classes together, i.e. towards the boundary.

    The batch is read as :math:`G = N / K` consecutive groups of :math:`K` samples.
    Inside a group, every pair :math:`(i, j)` with :math:`y_i \ne y_j` adds
    :math:`\lVert f(x_i) - f(x_j) \rVert_2^2` (on logits). Pairs never cross groups, and
    pairs of equal labels (and the diagonal) add nothing.

    Scaling: the reference takes the mean over the :math:`(G, K, K, C)` tensor of squared
    differences (each unordered pair counted twice) times :math:`K^2 / 2`, which is

    .. math:: \frac{1}{G\,C} \sum_{g} \sum_{i<j \in g,\ y_i \ne y_j} \lVert f(x_i) - f(x_j) \rVert_2^2 .

    Args:
        logits: teacher logits, shape :math:`(N, C)` with :math:`N` divisible by :math:`K`.
        labels: class indices, shape :math:`(N,)`.
        group_size: :math:`K`, samples per group.
        reduction: ``"mean"`` over groups (the reference value), ``"sum"``, or ``"none"``
            (shape :math:`(G,)`, one value per group).

    Examples:
        >>> logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.0]])
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> contrastive_loss(logits, labels, group_size=2, reduction="none")
        tensor([1., 0.])
        >>> contrastive_loss(logits, labels, group_size=2)
        tensor(0.5000)
    """
    _check_logits_labels(logits, labels)
    n, c = logits.shape
    if group_size < 1 or n % group_size != 0:
        raise ValueError(
            f"batch of {n} samples cannot be split into groups of group_size={group_size}; "
            "use a batch size that is a multiple of group_size"
        )
    z = logits.reshape(-1, group_size, c)  # (G, K, C)
    y = labels.reshape(-1, group_size)  # (G, K)
    diff = z.unsqueeze(2) - z.unsqueeze(1)  # (G, K, K, C)
    distinct = (y.unsqueeze(2) != y.unsqueeze(1)).to(diff.dtype)  # (G, K, K)
    per_group = (distinct * diff.pow(2).sum(-1)).sum((1, 2)) / (2 * c)  # (G,)
    return _reduce(per_group, reduction)


def total_variation(x: Tensor, reduction: str = "mean") -> Tensor:
    r"""Anisotropic total variation: a prior that prefers piecewise-smooth images.

    For each image and channel, the mean absolute difference of vertically neighbouring
    pixels plus the mean absolute difference of horizontally neighbouring pixels (means,
    not sums, so the value does not grow with resolution). This is the reference's scaling.

    Args:
        x: images, shape :math:`(*, H, W)` with :math:`H, W \ge 2`, e.g. :math:`(N, C, H, W)`.
        reduction: ``"mean"`` over all leading dimensions (the reference value), ``"sum"``,
            or ``"none"`` (shape :math:`(*)`, one value per image and channel).

    Examples:
        >>> total_variation(torch.ones(1, 1, 4, 4))
        tensor(0.)
        >>> stripes = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # vertical stripes
        >>> total_variation(stripes)
        tensor(1.)
    """
    if x.ndim < 2 or x.shape[-1] < 2 or x.shape[-2] < 2:
        raise ValueError(
            f"total_variation needs images of shape (*, H, W) with H, W >= 2, got {tuple(x.shape)}; "
            "set w_tv=0 for non-image data"
        )
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((-2, -1))
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().mean((-2, -1))
    return _reduce(vertical + horizontal, reduction)


def soft_cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Cross-entropy against a probability vector: :math:`-\sum_c p_c \log \mathrm{softmax}(z)_c`.

    Args:
        logits: student logits, shape :math:`(N, C)`.
        target: probabilities, shape :math:`(N, C)` (rows sum to 1), or class indices
            :math:`(N,)`, which gives ordinary cross-entropy.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape :math:`(N,)`).

    Examples:
        >>> logits = torch.zeros(1, 4, requires_grad=True)
        >>> loss = soft_cross_entropy(logits, torch.full((1, 4), 0.25))
        >>> round(loss.item(), 4)  # log 4
        1.3863
        >>> loss.backward()
    """
    if target.ndim == 1:
        return F.cross_entropy(logits, target, reduction=reduction)
    if target.shape != logits.shape:
        raise ValueError(
            f"soft targets must match logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    per_sample = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    return _reduce(per_sample, reduction)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 4.0,
    w_true: float = 0.0,
    w_soft: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Knowledge-distillation loss of Hinton et al. (2015), as on the CAKE poster.

    .. math:: w_{true}\,\mathrm{CE}(y, f^S(x)) + w_{soft}\,T^2\,
              \mathrm{CE}\big(\mathrm{softmax}(f^T(x)/T),\ f^S(x)/T\big)

    The :math:`T^2` factor keeps the soft term's gradients at the same scale as
    :math:`T` changes. The soft term is a cross-entropy (it differs from the KL divergence
    by the teacher's entropy, a constant for the student).

    Args:
        student_logits, teacher_logits: shape :math:`(N, C)`.
        labels: true classes, shape :math:`(N,)`; required when ``w_true > 0``.
        temperature: :math:`T > 0`.
        w_true, w_soft: the weights :math:`\lambda_{true}, \lambda_{soft}`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape :math:`(N,)`).

    Examples:
        >>> s = torch.randn(8, 10, requires_grad=True)
        >>> t = torch.randn(8, 10)
        >>> loss = kd_loss(s, t, torch.randint(10, (8,)), w_true=0.5, w_soft=0.5)
        >>> loss.backward()
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must have the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    soft_target = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    per_sample = w_soft * temperature**2 * soft_cross_entropy(
        student_logits / temperature, soft_target, reduction="none"
    )
    if w_true > 0:
        if labels is None:
            raise ValueError("kd_loss with w_true > 0 needs the true labels")
        per_sample = per_sample + w_true * F.cross_entropy(student_logits, labels, reduction="none")
    return _reduce(per_sample, reduction)
