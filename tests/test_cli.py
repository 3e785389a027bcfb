"""The command line end to end at smoke size (seconds on a CPU)."""
import json

import pytest
import torch

from cake_mini import cli, data, experiments, synthesis
from cake_mini.distill import evaluate
from cake_mini.experiments import EXPERIMENTS


def test_list_names_every_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("toy2d", "digits", "fashion-mnist", "mnist", "cifar10-resnet"))


# smoke size learns something: teachers above chance (1/3 and 1/10); the toy student too
# (3 smoke epochs leave the digits teacher at ~25 %, too weak to ask more of its student)
SMOKE_FLOORS = {"toy2d": (0.8, 0.4), "digits": (0.15, 0.0)}


@pytest.mark.parametrize("experiment", ["toy2d", "digits"])
def test_run_writes_results_figure_and_models(tmp_path, experiment, capsys, monkeypatch):
    out = tmp_path / experiment
    assert cli.main(["run", experiment, "--size", "smoke", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["size"] == "smoke" and results["seed"] == 0
    teacher_floor, student_floor = SMOKE_FLOORS[experiment]
    assert results["teacher"]["test_accuracy"] > teacher_floor
    assert results["student"]["test_accuracy"] > student_floor
    assert results["hardware"]["device"] == "cpu" and results["versions"]["torch"]
    assert (out / "samples.png").stat().st_size > 1000
    assert (out / "teacher.pt").exists() and (out / "student.pt").exists()
    assert "student accuracy" in capsys.readouterr().out
    exp = EXPERIMENTS[experiment]  # the reported accuracy is the saved student's
    _, test, shape, classes = experiments._load_data(exp, 0, False, "smoke")
    student = experiments._make(exp.student, classes, shape, exp.student_options)
    student.load_state_dict(torch.load(out / "student.pt"))
    assert evaluate(student, test) == results["student"]["test_accuracy"]
    # a second run reuses the teacher, the finished synthesis and the finished student: any
    # training step or synthesis step would now fail
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(torch.optim.SGD, "step", must_not_run)
    monkeypatch.setattr(synthesis, "_optimize_batches", must_not_run)
    assert cli.main(["run", experiment, "--size", "smoke", "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "results.json").read_text())
    for who in ("teacher", "student"):
        assert again[who]["test_accuracy"] == results[who]["test_accuracy"]


def test_cifar10_pipeline_on_explicit_stand_in_data(tmp_path):
    out = tmp_path / "c10"
    assert cli.main(["run", "cifar10-resnet", "--size", "smoke", "--stand-in", "--out", str(out),
                     "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["stand_in_data"] is True
    assert results["synthesis"]["steps"] == EXPERIMENTS["cifar10-resnet"].budgets["smoke"].steps


def test_unknown_experiment_and_missing_data_are_clear(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "imagenet"])
    assert "choose one of" in capsys.readouterr().err
    monkeypatch.setenv("CAKE_MINI_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_DIRS", {}, raising=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_torchvision_download", offline)
    assert cli.main(["run", "cifar10-resnet", "--size", "smoke", "--out", str(tmp_path / "x")]) == 2
    assert "CAKE_MINI_DATA" in capsys.readouterr().err


@pytest.fixture
def recorded_distill(monkeypatch):
    """What the experiment passes to ``distill`` (config, teacher, number of samples), recorded as it runs."""
    seen = {}
    real_distill = experiments.distill

    def recording_distill(student, train_set, config, **kwargs):
        seen.update(config=config, teacher=kwargs.get("teacher"), samples=len(train_set))
        return real_distill(student, train_set, config, **kwargs)

    monkeypatch.setattr(experiments, "distill", recording_distill)
    return seen


@pytest.mark.parametrize("name", sorted(EXPERIMENTS["fashion-mnist"].student_variants))
def test_a_student_variant_changes_the_student_recipe_and_is_recorded(name, tmp_path, recorded_distill, capsys):
    variant = EXPERIMENTS["fashion-mnist"].student_variants[name]
    seen = recorded_distill
    out = tmp_path / "fm"
    assert cli.main(["run", "fashion-mnist", "--size", "smoke", "--stand-in", "--student-variant", name,
                     "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["student_variant"] == name and results["online_teacher"] == variant.online_teacher
    assert all(getattr(seen["config"], key) == value for key, value in variant.recipe.items())
    assert results["distill"] == {**results["distill"], **variant.recipe}
    assert (seen["teacher"] is not None) == variant.online_teacher
    assert results["synthesis"]["snapshots"] == variant.snapshots
    assert results["synthesis"] == {**results["synthesis"], **variant.synthesis}
    assert results["synthesis"]["num_samples"] == EXPERIMENTS["fashion-mnist"].budgets["smoke"].num_samples
    budget = EXPERIMENTS["fashion-mnist"].budgets["smoke"]
    assert seen["samples"] == variant.snapshots * budget.num_samples  # every kept iterate
    # a variant the experiment does not have is refused, naming the ones it has
    with pytest.raises(SystemExit):
        cli.main(["run", "fashion-mnist", "--student-variant", "no-such-variant"])
    assert name in capsys.readouterr().err
    with pytest.raises(ValueError, match="no student variant"):
        experiments.run_experiment("digits", size="smoke", student_variant=name, out=tmp_path / "d")


@pytest.mark.parametrize("flag", [False, True])
def test_channels_last_reaches_the_student_and_is_recorded(flag, tmp_path, recorded_distill):
    seen = recorded_distill
    out = tmp_path / "fm"
    assert cli.main(["run", "fashion-mnist", "--size", "smoke", "--stand-in", "--out", str(out), "--no-progress"]
                    + (["--channels-last"] if flag else [])) == 0
    assert seen["config"].channels_last is flag
    assert json.loads((out / "results.json").read_text())["distill"]["channels_last"] is flag


def test_a_variant_may_change_the_synthesis_but_not_its_budget():
    with pytest.raises(ValueError, match="keeps the experiment's budget"):
        experiments.StudentVariant("more samples", synthesis=dict(num_samples=10**6))


CPUINFO = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC 9R14
flags		: fpu sse avx2 avx512f avx512bw

processor	: 1
model name	: AMD EPYC 9R14
"""


def test_hardware_names_the_cpu_model_and_allocator_where_linux_tells(tmp_path):
    from cake_mini.results import hardware_text

    (tmp_path / "cpuinfo").write_text(CPUINFO)
    details = experiments.cpu_details(tmp_path / "cpuinfo")
    assert details == {"cpu_model": "AMD EPYC 9R14, family 25 model 17", "avx512": True}
    (tmp_path / "cpuinfo").write_text(CPUINFO.replace(" avx512f avx512bw", ""))
    assert experiments.cpu_details(tmp_path / "cpuinfo")["avx512"] is False
    assert experiments.cpu_details(tmp_path / "missing") == {} == experiments.allocator(tmp_path / "missing")
    (tmp_path / "maps").write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert experiments.allocator(tmp_path / "maps") == {"allocator": "jemalloc"}
    (tmp_path / "maps").write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert experiments.allocator(tmp_path / "maps") == {"allocator": "default"}
    hw = {"cpu": "x86_64", "cpu_threads": 1, **details, "allocator": "jemalloc"}
    assert hardware_text({"hardware": hw}) == "CPU (AMD EPYC 9R14, family 25 model 17, AVX-512), 1 thread per process, jemalloc"
    assert hardware_text({"hardware": {"cpu": "x86_64", "cpu_threads": 2}}) == "CPU (x86_64), 2 threads per process"
