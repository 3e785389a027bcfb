"""benchmarks/student_step.py times the randaugment student three ways; the script must keep running as distill changes."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import cake_mini as cm

_spec = importlib.util.spec_from_file_location(
    "student_step_benchmark", Path(__file__).parents[1] / "benchmarks" / "student_step.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)

distill_module = sys.modules["cake_mini.distill"]  # the package exports the function `distill` under that name

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_reference_takes_what_distill_passes_to_rand_augment():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    keep = torch.tensor([1, 4])
    out = bench.per_image_rand_augment(x, torch.Generator().manual_seed(0), keep=keep)
    whole = bench.per_image_rand_augment(x, torch.Generator().manual_seed(0))
    grouped = distill_module.rand_augment(x, torch.Generator().manual_seed(0), keep=keep)
    assert torch.equal(out, whole[keep]) and out.shape == grouped.shape


def test_the_script_writes_every_variant(tmp_path, monkeypatch):
    out = tmp_path / "step.json"
    monkeypatch.setattr(sys, "argv", ["student_step.py", "--batches", "1", "--out", str(out)])
    bench.main()
    result = json.loads(out.read_text())
    assert set(result["ms_per_step"]) == {"per-image", "grouped", "grouped+channels-last", bench.BEFORE}
    assert all(ms > 0 for ms in result["ms_per_step"].values())
    assert result["speedup_vs_per_image"]["per-image"] == 1.0
    assert result["batches"] == 1 and "hardware" in result and "versions" in result
    assert distill_module.rand_augment is not bench.per_image_rand_augment  # put back afterwards
    assert distill_module._draw_operations is not bench.uncached_draw_operations


def test_the_before_variant_draws_and_pools_as_today():
    from torchvision.transforms import v2

    policy = v2.RandAugment()
    draws = []
    for draw in (distill_module._draw_operations, bench.uncached_draw_operations):
        torch.manual_seed(0)
        draws.append(draw(policy, 300, (32, 32)))
    assert draws[0] == draws[1]
    model = cm.models.make_model("lenet5", 10).eval()
    old = bench.with_torch_pool(cm.models.make_model("lenet5", 10)).eval()
    old.load_state_dict(model.state_dict())
    assert not any(isinstance(m, cm.models.MaxPool2x2) for m in old.modules())
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), old(x))
