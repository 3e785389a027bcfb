"""cake_mini.viz: the image grid's scale check and the kernel-free synthesis animation."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from cake_mini import viz  # noqa: E402

FRAME = re.compile(r'frames\[\d+\] = "data:image/png;base64,([^"]+)"')


# ------------------------------------------------------------------------------ image_grid


@pytest.mark.parametrize("scale", ["Each", "minmax", "", None])
def test_image_grid_rejects_unknown_scale(scale):
    x = torch.randn(4, 1, 8, 8)
    figures = plt.get_fignums()
    with pytest.raises(ValueError, match=r"scale must be one of \('each', 'clip'\)"):
        viz.image_grid(x, torch.tensor([0, 1, 0, 1]), nrow=2, scale=scale)
    assert plt.get_fignums() == figures, "a rejected call must not leave a figure open"
    with pytest.raises(ValueError, match="scale must be one of"):
        viz._to_display(x[0], scale)


def test_image_grid_scales():
    img = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]])  # (1, 2, 2)
    clip = viz._to_display(img, "clip")
    assert clip.tolist() == [[0.0, 0.5], [1.0, 1.0]]  # [-1, 1] -> [0, 1], beyond it clipped
    each = viz._to_display(img, "each")
    assert each.min() == 0.0 and each.max() == 1.0
    fig = viz.image_grid(torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]), nrow=2, scale="clip")
    assert len(fig.axes) == 2 * 3
    plt.close(fig)


# ------------------------------------------------------------------------------ animation


def _moving_points(steps, n=12, seed=0):
    """Points that drift to the right by 0.2 per step: every frame differs."""
    start = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return {t: start + torch.tensor([0.2 * t, 0.0]) for t in steps}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_animation_embeds_every_frame_and_a_player():
    steps = (0, 1, 2, 5)
    labels = torch.arange(12) % 3
    animation = viz.synthesis_animation(
        {"CAKE": _moving_points(steps), "LAKE": _moving_points(steps, seed=1)}, labels,
        model=_model(), title="one batch", resolution=30, dpi=40,
    )
    html = animation._repr_html_()
    assert html == animation.html and animation.steps == list(steps)
    frames = FRAME.findall(html)
    assert len(frames) == len(steps), "one embedded PNG per step"
    assert len(set(frames)) == len(steps), "the samples move, so every frame differs"
    # the player: one image, a range slider over the frames, the buttons, and its script
    assert html.count('<div class="animation">') == 1
    assert re.search(r'<input id="_anim_slider\w+" type="range" class="anim-slider"', html)
    for title in ("First frame", "Previous frame", "Play", "Pause", "Next frame", "Last frame"):
        assert f'title="{title}"' in html
    assert "new Animation(frames" in html and "set_frame(parseInt(this.value))" in html
    # and nothing from another host: the page has to work offline and without a kernel
    assert "https://" not in html and "http://" not in html and "font-awesome" not in html
    assert "<i class=" not in html, "icons are replaced by characters"
    assert "4 frames" in repr(animation)


def test_animation_single_panel_without_model_or_labels():
    animation = viz.synthesis_animation(_moving_points((0, 3)), dpi=30)
    assert len(FRAME.findall(animation.html)) == 2


def test_animation_leaves_no_figure_open():
    figures = plt.get_fignums()
    viz.synthesis_animation(_moving_points((0, 1)), dpi=30)
    assert plt.get_fignums() == figures


def test_animation_checks_its_input():
    with pytest.raises(ValueError, match="same steps"):
        viz.synthesis_animation({"a": _moving_points((0, 1)), "b": _moving_points((0, 2))})
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        viz.synthesis_animation({0: torch.zeros(5, 3)})
    with pytest.raises(ValueError, match="at least one step"):
        viz.synthesis_animation({})


def test_animation_refuses_to_drop_frames():
    # matplotlib silently stops embedding frames past animation.embed_limit; we raise instead
    with matplotlib.rc_context({"animation.embed_limit": 0.001}):  # MB: about one small frame
        with pytest.raises(ValueError, match="embed_limit"):
            viz.synthesis_animation(_moving_points(range(6)), dpi=60)


# ------------------------------------------- the player in a browser, checked like the book is

_ROOT = Path(__file__).resolve().parents[1]


def _browser_check():
    spec = importlib.util.spec_from_file_location("browser_check", _ROOT / "tests" / "browser_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("browser_check", module)
    spec.loader.exec_module(module)
    return module


def test_animation_works_in_a_browser(tmp_path):
    """browser_check.check_animation on a page holding only the animation: it passes, and
    it fails when the player's script is removed."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses the system Chromium)")
    check = _browser_check()
    if check.find_chromium() is None:
        pytest.skip("no Chromium/Chrome binary: apt-get install chromium, or set CAKE_MINI_CHROMIUM")
    html = viz.synthesis_animation(_moving_points((0, 1, 2)), torch.arange(12) % 2, dpi=30).html
    (tmp_path / "ok.html").write_text(f"<html><body>{html}</body></html>")
    frozen = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    (tmp_path / "frozen.html").write_text(f"<html><body>{frozen}</body></html>")
    (tmp_path / "none.html").write_text("<html><body><p>no animation</p></body></html>")
    with check.serve(tmp_path) as base_url, check.browser(base_url) as context:
        results = {}
        for name in ("ok", "frozen", "none"):
            tab = context.new_page()
            tab.goto(f"{base_url}{name}.html", wait_until="load")
            results[name] = check.check_animation(tab)
            tab.close()
    assert results["ok"] == []
    assert any("never showed a frame" in p for p in results["frozen"]), results["frozen"]
    assert any("no synthesis animation" in p for p in results["none"]), results["none"]
