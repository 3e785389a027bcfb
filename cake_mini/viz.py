"""Figures for the book and the CLI: decision regions in 2D and grids of synthetic images.

matplotlib is imported inside each function, so ``import cake_mini`` stays light.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


@torch.no_grad()
def predict_grid(model: Callable[[Tensor], Tensor], extent: Sequence[float] = (-3, 3, -3, 3),
                 resolution: int = 200):
    """Class predicted at every point of a 2D grid: numpy arrays ``(xx, yy, classes)``, each ``(R, R)``."""
    x0, x1, y0, y1 = extent
    xs, ys = torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"
    classes = model(points.to(device)).argmax(-1).cpu().reshape(resolution, resolution)
    return xx.numpy(), yy.numpy(), classes.numpy()


def plot_decision_regions(model, ax=None, *, extent=(-3, 3, -3, 3), points: Tensor | None = None,
                          labels: Tensor | None = None, num_classes: int | None = None,
                          title: str | None = None, resolution: int = 200, alpha: float = 0.25,
                          marker_size: float = 6):
    """Shade the model's decision regions on a 2D grid; scatter ``points`` coloured by ``labels``.

    Chapter 2 of the book draws every teacher and student with it.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    xx, yy, classes = predict_grid(model, extent, resolution)
    k = num_classes or int(classes.max()) + 1
    cmap = plt.get_cmap("tab10")
    ax.contourf(xx, yy, classes, levels=[i - 0.5 for i in range(k + 1)], colors=[cmap(i) for i in range(k)],
                alpha=alpha)
    if k > 1:
        ax.contour(xx, yy, classes, levels=[i + 0.5 for i in range(k - 1)], colors="k", linewidths=0.6)
    if points is not None:
        c = [cmap(int(i)) for i in labels] if labels is not None else "k"
        points = points.detach().cpu().numpy()
        ax.scatter(points[:, 0], points[:, 1], c=c, s=marker_size, edgecolors="k", linewidths=0.2)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def image_grid(x: Tensor, labels: Tensor | None = None, *, nrow: int = 10,
               class_names: Sequence[str] | None = None, title: str | None = None,
               per_class: bool = True, scale: str = "each"):
    """A figure of images ``(N, C, H, W)``; with ``labels`` and ``per_class``, one column per class.

    ``scale="each"`` stretches every image to its own min..max (synthetic samples have
    no fixed range); ``"clip"`` shows ``[-1, 1]`` as black..white.
    """
    import matplotlib.pyplot as plt

    if per_class and labels is not None:
        classes = sorted(set(labels.tolist()))
        columns = [x[labels == c][:nrow] for c in classes]
        rows = max(len(col) for col in columns)
    else:
        classes, columns, rows = None, [x[i::nrow] for i in range(nrow)], -(-len(x) // nrow)
    fig, axes = plt.subplots(rows, len(columns), figsize=(0.9 * len(columns), 0.9 * rows + 0.4),
                             squeeze=False)
    for j, col in enumerate(columns):
        for i in range(rows):
            ax = axes[i, j]
            ax.axis("off")
            if i < len(col):
                ax.imshow(_to_display(col[i], scale), cmap="gray" if col[i].shape[0] == 1 else None)
        if classes is not None:
            name = class_names[classes[j]] if class_names else str(classes[j])
            axes[0, j].set_title(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _to_display(img: Tensor, scale: str):
    img = img.detach().float().cpu()
    if scale == "each":
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
    else:
        img = ((img + 1) / 2).clamp(0, 1)
    img = img.permute(1, 2, 0)
    return (img[..., 0] if img.shape[-1] == 1 else img).numpy()
