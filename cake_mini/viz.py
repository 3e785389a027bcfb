"""Figures for the book and the CLI: decision regions in 2D, grids of synthetic images, and
an animation of samples moving during synthesis that plays on a static web page.

matplotlib is imported inside each function, so ``import cake_mini`` stays light.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

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


SCALES = ("each", "clip")


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def image_grid(x: Tensor, labels: Tensor | None = None, *, nrow: int = 10,
               class_names: Sequence[str] | None = None, title: str | None = None,
               per_class: bool = True, scale: str = "each"):
    """A figure of images ``(N, C, H, W)``; with ``labels`` and ``per_class``, one column per class.

    ``scale="each"`` stretches every image to its own min..max (synthetic samples have
    no fixed range); ``"clip"`` shows ``[-1, 1]`` as black..white. Any other value raises
    ``ValueError``.
    """
    _check_scale(scale)
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
    _check_scale(scale)
    img = img.detach().float().cpu()
    if scale == "each":
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
    else:  # "clip"
        img = ((img + 1) / 2).clamp(0, 1)
    img = img.permute(1, 2, 0)
    return (img[..., 0] if img.shape[-1] == 1 else img).numpy()


# ------------------------------------------------------------------------- animation


class HTMLAnimation:
    """An animation as self-contained HTML: every frame embedded, a slider and play buttons
    driven by a few lines of JavaScript, so it works on a static page without a kernel.

    Jupyter and Jupyter Book show it through ``_repr_html_``; ``.html`` is the markup.
    """

    def __init__(self, html: str, steps: Sequence[int]):
        self.html = html
        self.steps = list(steps)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<HTMLAnimation: {len(self.steps)} frames, steps {self.steps[0]}..{self.steps[-1]}>"


# matplotlib's jshtml player draws its buttons with Font Awesome 4 from a CDN. The book serves
# no such file (and its checks allow no outside requests), so the link goes and every icon
# becomes a plain character.
_BUTTON_GLYPHS = {  # HTML entities (ASCII, whatever the page's charset) of characters every font has
    "fa-minus": "&minus;", "fa-fast-backward": "&laquo;", "fa-step-backward": "&lsaquo;",
    "fa-play fa-flip-horizontal": "&#9664;", "fa-pause": "||", "fa-play": "&#9654;",
    "fa-step-forward": "&rsaquo;", "fa-fast-forward": "&raquo;", "fa-plus": "+",
}


def _offline_player(markup: str) -> str:
    markup = re.sub(r"<link[^>]*font-awesome[^>]*>", "", markup)
    return re.sub(r'<i class="fa (fa-[a-z- ]+)"></i>', lambda m: _BUTTON_GLYPHS.get(m[1], "&middot;"), markup)


def synthesis_animation(frames: Mapping, labels: Tensor | Mapping[str, Tensor] | None = None, *,
                        model: Callable[[Tensor], Tensor] | None = None,
                        extent: Sequence[float] = (-3, 3, -3, 3), num_classes: int | None = None,
                        title: str | None = None, interval: int = 200, panel_size: float = 3.0,
                        marker_size: float = 10, resolution: int = 150, dpi: int = 72) -> HTMLAnimation:
    """2D samples moving during synthesis, as an animation with a slider that needs no kernel.

    Args:
        frames: ``{step: points (N, 2)}`` for one panel, or ``{panel title: {step: points}}``
            for panels side by side (every panel with the same steps), e.g. cross-entropy
            only, CAKE and LAKE on the same starting batch.
        labels: ``(N,)`` class of each sample (its colour), or ``{panel title: (N,)}``.
        model: a 2D classifier; its decision regions are shaded behind the samples
            (computed once, they do not move).
        extent: ``(x0, x1, y0, y1)`` of every panel.
        num_classes: colours and regions; default ``max(labels) + 1``.
        title: above the panels; each frame appends ``step t``.
        interval: milliseconds per frame when playing.
        panel_size, dpi: inches per panel and pixels per inch of every frame (the page
            embeds each frame as a PNG: keep both small).

    Returns:
        :class:`HTMLAnimation`: Jupyter (and the book) show the player, with every frame
        embedded. matplotlib's ``FuncAnimation.to_jshtml`` makes it; the player's buttons
        use plain characters instead of icons from a CDN.

    Chapter 2 of the book animates one batch of CAKE, LAKE and cross-entropy alone with it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    first = next(iter(frames.values()), None)
    panels = dict(frames) if isinstance(first, Mapping) else {"": frames}
    if not panels or any(not steps for steps in panels.values()):
        raise ValueError("frames must hold at least one step per panel")
    steps = sorted(next(iter(panels.values())))
    for name, panel in panels.items():
        if sorted(panel) != steps:
            raise ValueError(f"every panel needs the same steps; {name!r} has {sorted(panel)}, expected {steps}")
        for t, points in panel.items():
            if points.dim() != 2 or points.shape[1] != 2:
                raise ValueError(f"points must be (N, 2); panel {name!r}, step {t} has {tuple(points.shape)}")
    if labels is not None and not isinstance(labels, Mapping):
        labels = {name: labels for name in panels}
    if num_classes is None and labels is not None:
        num_classes = int(max(int(y.max()) for y in labels.values())) + 1

    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels), panel_size + 0.6),
                             squeeze=False, dpi=dpi, layout="constrained")
    scatters = []
    for ax, (name, panel) in zip(axes[0], panels.items()):
        if model is not None:
            plot_decision_regions(model, ax, extent=extent, num_classes=num_classes, resolution=resolution)
        else:
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        colours = ([cmap(int(c) % 10) for c in labels[name]] if labels is not None else "k")
        points = panel[steps[0]].detach().cpu().numpy()
        scatters.append(ax.scatter(points[:, 0], points[:, 1], c=colours, s=marker_size,
                                   edgecolors="k", linewidths=0.3))
        ax.set_title(name, fontsize=9)
    heading = fig.suptitle("", fontsize=10)  # constrained layout keeps it clear of the panel titles

    def draw(i):
        for scatter, panel in zip(scatters, panels.values()):
            scatter.set_offsets(panel[steps[i]].detach().cpu().numpy())
        heading.set_text(f"{title}: step {steps[i]}" if title else f"step {steps[i]}")
        return [*scatters, heading]

    animation = FuncAnimation(fig, draw, frames=len(steps), interval=interval, blit=False)
    try:
        markup = animation.to_jshtml(default_mode="once")
    finally:
        plt.close(fig)
    embedded = markup.count("data:image/png;base64,")
    if embedded != len(steps):  # matplotlib drops frames beyond rcParams["animation.embed_limit"]
        raise ValueError(f"only {embedded} of {len(steps)} frames fit matplotlib's animation.embed_limit "
                         f"({plt.rcParams['animation.embed_limit']} MB): pass fewer steps, or a smaller "
                         f"dpi or panel_size")
    return HTMLAnimation(_offline_player(markup), steps)
