"""benchmarks/allocator.py times synthesis and the student under each allocator the machine has."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "allocator_benchmark", Path(__file__).parents[1] / "benchmarks" / "allocator.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_jemalloc_is_preloaded_only_where_it_is_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "JEMALLOC_PATHS", [str(tmp_path / "libjemalloc.so.2")])
    assert bench.allocators() == {"glibc": {}}
    (tmp_path / "libjemalloc.so.2").touch()
    found = bench.allocators()
    assert found["jemalloc"] == {"LD_PRELOAD": str(tmp_path / "libjemalloc.so.2")}
    assert found["jemalloc-retain"] == {"LD_PRELOAD": str(tmp_path / "libjemalloc.so.2"),
                                        "MALLOC_CONF": bench.RETAIN_CONF}


def test_the_script_measures_both_phases_in_fresh_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "JEMALLOC_PATHS", [])  # glibc only: the same on every machine
    out = tmp_path / "allocator.json"
    monkeypatch.setattr(sys, "argv", ["allocator.py", "--steps", "4", "--batches", "1", "--out", str(out)])
    bench.main()
    result = json.loads(out.read_text())
    assert list(result["runs"]) == ["glibc"] and result["speedup_over_glibc"] == {} == result["same_samples_as_glibc"]
    assert len(result["runs"]["glibc"]["synthesis"]["samples_sha256"]) == 64
    synthesis, student = result["runs"]["glibc"]["synthesis"], result["runs"]["glibc"]["student"]
    assert synthesis["sample_steps_per_s"] > 0 and student["ms_per_step"] > 0
    assert synthesis["minor_page_faults"] >= 0 and 0 <= synthesis["kernel_share_of_cpu"] <= 1
    assert synthesis["peak_rss_mib"] > 100  # torch alone is more
    assert result["versions"]["glibc"].startswith("glibc") and "hardware" in result


def test_a_child_that_fails_stops_the_run_with_its_error(monkeypatch):
    monkeypatch.setattr(bench, "JEMALLOC_PATHS", [])
    monkeypatch.setattr(sys, "argv", ["allocator.py", "--steps", "3", "--batches", "1", "--out", "/dev/null"])
    with pytest.raises(RuntimeError, match="synthesis run under glibc failed(.|\\n)*snapshots=4 must be <= steps=3"):
        bench.main()


def test_the_results_page_reads_every_allocator_of_the_committed_file():
    from cake_mini import results

    data = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "allocator-cpu-2core-1threads.json")
                      .read_text())
    metrics = results.metrics_of(data)
    for allocator, phases in data["runs"].items():
        synthesis = results.find(metrics, allocator, "synthesis sample-steps/s, by allocator")
        student = results.find(metrics, allocator, "student ms per step, by allocator")
        assert synthesis["values"] == {"-": phases["synthesis"]["sample_steps_per_s"]}
        assert student["values"] == {"-": phases["student"]["ms_per_step"]}
    assert all(data["same_samples_as_glibc"].values()), "an allocator changed the samples"
