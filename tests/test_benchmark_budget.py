"""The FashionMNIST benchmark's budget curve and search take smaller runs' samples out of one large run."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import cake_mini as cm
from cake_mini.schedules import step_sizes

_spec = importlib.util.spec_from_file_location(
    "fashion_mnist_benchmark", Path(__file__).parents[1] / "benchmarks" / "fashion_mnist.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up there
_spec.loader.exec_module(bench)
sys.modules["fashion_mnist"] = bench  # what the search script imports
_spec = importlib.util.spec_from_file_location(
    "fashion_mnist_search", Path(__file__).parents[1] / "benchmarks" / "fashion_mnist_search.py")
search = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = search
_spec.loader.exec_module(search)
sys.modules["fashion_mnist_search"] = search
_spec = importlib.util.spec_from_file_location(
    "fashion_mnist_samples", Path(__file__).parents[1] / "benchmarks" / "fashion_mnist_samples.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_kth_batch_and_a_snapshot_are_a_smaller_run(tiny_teacher):
    config = cm.SynthesisConfig(num_samples=80, batch_size=10, steps=8, group_size=5, lr=0.5, lr_decades=2,
                                w_cls=3.0, w_contr=0.3, w_tv=1.0, snapshots=4, parallel_batches=2, seed=3)
    full = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False)
    assert len(full) == 80 * 4
    part = bench.budget_subset(full, config, stride=4, steps=4)
    assert len(part) == 20 and (part.step == 4).all()  # batches 0 and 4, after 4 of 8 steps
    # the step sizes of a run with 8 / 4 = 2 batches
    torch.testing.assert_close(part.step_size.unique().sort(descending=True).values,
                               step_sizes(2, config.lr, config.lr_decades, config.schedule).float())
    # the snapshot after 4 steps is what a 4-step run returns for the same batches
    short = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config.replace(steps=4, snapshots=1), progress=False)
    kept = torch.cat([torch.arange(0, 10), torch.arange(40, 50)])
    assert torch.equal(part.x, short.x[kept]) and torch.equal(part.soft_labels, short.soft_labels[kept])
    final = bench.budget_subset(full, config, stride=1, steps=8)
    assert torch.equal(final.x, cm.synthesize(tiny_teacher, (1, 8, 8), 5, config.replace(snapshots=1),
                                              progress=False).x)
    with pytest.raises(ValueError, match="no snapshot after 5 steps"):
        bench.budget_subset(full, config, stride=1, steps=5)


def test_search_candidates_train_on_the_same_samples_as_their_controls(tiny_teacher):
    config = cm.SynthesisConfig(num_samples=80, batch_size=10, steps=8, group_size=5, lr=0.5, lr_decades=2,
                                w_cls=3.0, w_contr=0.3, w_tv=1.0, snapshots=4, parallel_batches=2, seed=3)
    full = cm.synthesize(tiny_teacher, (1, 8, 8), 5, config, progress=False)
    by_name = search.BY_NAME
    control = search.training_set(by_name["cake"], full, config, 4, 8, tiny_teacher, "cpu")
    assert torch.equal(control.x, bench.budget_subset(full, config, stride=4, steps=8).x)
    # snapshots: every kept iterate of the same mini-batches, so 4x the samples
    snaps = search.training_set(by_name["snapshots"], full, config, 4, 8, tiny_teacher, "cpu")
    assert len(snaps) == 4 * len(control) and sorted(snaps.step.unique().tolist()) == [2, 4, 6, 8]
    assert torch.equal(snaps.subset(snaps.step == 8).x, control.x)
    everything = search.training_set(by_name["snapshots"], full, config, 1, 8, tiny_teacher, "cpu")
    assert everything.x is full.x  # all of it: the synthesis itself, not a copy (4 GB at the paper's budget)
    # ... and as many student SGD steps as its control: 4x the samples for 1x the epochs
    long_student = by_name[by_name["snapshots"].control]
    assert long_student.epochs_factor * len(control) == by_name["snapshots"].epochs_factor * len(snaps)
    # clamp-relabel: the data's range, labels the teacher's on the clamped inputs
    x, soft = search.training_set(by_name["clamp-relabel"], full, config, 4, 8, tiny_teacher, "cpu")
    assert x.min() >= -1 and x.max() <= 1 and (control.x.abs() > 1).any()
    with torch.no_grad():
        torch.testing.assert_close(soft, tiny_teacher(x).softmax(-1))
    # clamping applies to the snapshots too: their samples, clamped and relabelled
    both = search.Candidate("clamp-snapshots", "", control=None, all_snapshots=True, clamp=True)
    x4, soft4 = search.training_set(both, full, config, 4, 8, tiny_teacher, "cpu")
    assert torch.equal(x4, snaps.x.clamp(-1, 1)) and soft4.shape == snaps.soft_labels.shape


def test_a_candidate_with_synthesis_settings_of_its_own_keeps_the_budget_of_its_control():
    size = bench.SIZES["default"]
    low = search.BY_NAME["low-eta-randaugment-snapshots"]
    cake = bench.synthesis_config(search.BY_NAME[low.control].row(), size, 0)
    other = bench.synthesis_config(low.row(), size, 0)
    assert (other.lr, other.lr_decades) == (1e-2, 2) and (cake.lr, cake.lr_decades) == (0.1, 4)
    assert other.replace(lr=cake.lr, lr_decades=cake.lr_decades) == cake  # same samples, steps, snapshots


def test_search_compares_each_candidate_with_its_control_seed_by_seed():
    run = lambda seed, acc: {"seed": seed, "student_accuracy": acc}  # noqa: E731
    results = {"rows": {"cake": {"runs": [run(0, 0.70), run(1, 0.74), run(2, 0.72)]},
                        "clamp-relabel": {"runs": [run(0, 0.75), run(2, 0.71)]}}}
    assert search.paired(results, "clamp-relabel") == pytest.approx([5.0, -1.0])  # seeds 0 and 2 only
    assert search.paired(results, "cake") is None  # no control
    assert search.paired(results, "mixup-online") is None  # not run


def test_the_search_runs_controls_first_unless_told_not_to():
    names = lambda candidates: [c.name for c in candidates]  # noqa: E731
    assert names(search.to_run(["randaugment-snapshots", "clamp-relabel"])) == \
        ["cake", "snapshots", "clamp-relabel", "randaugment-snapshots"]
    assert names(search.to_run(["randaugment-snapshots", "randaugment-snapshots"], controls=False)) == \
        ["randaugment-snapshots"]


def test_merging_result_files_adds_missing_seeds_and_keeps_the_runs_already_there(tmp_path):
    run = lambda seed, acc: {"seed": seed, "student_accuracy": acc}  # noqa: E731
    mine = {"settings": {"steps": 8}, "rows": {"cake": {"runs": [run(2, 0.70)]}}}
    other = {"settings": {"steps": 8}, "rows": {"cake": {"runs": [run(0, 0.60), run(2, 0.99)]},
                                                "noise": {"runs": [run(0, 0.20)]}}}
    path = tmp_path / "other.json"
    path.write_text(__import__("json").dumps(other))
    for merged in (bench.merge(mine, path, tmp_path / "out.json"), search.merge(mine, other)):
        assert merged["rows"]["cake"]["runs"] == [run(0, 0.60), run(2, 0.70)]  # seed 2 stays ours
        assert merged["rows"]["noise"]["runs"] == [run(0, 0.20)]
    assert mine["rows"]["cake"]["runs"] == [run(2, 0.70)]  # the inputs are not changed
    with pytest.raises(SystemExit, match="other"):
        search.merge(mine, {**other, "settings": {"steps": 4}})


def test_merged_seeds_keep_the_machine_they_ran_on(tmp_path):
    zen4 = {"device": "cpu", "cpu": "x86_64", "cpu_threads": 1}
    zen3 = {"device": "cpu", "cpu": "x86_64", "cpu_model": "AMD EPYC, family 25 model 1", "cpu_threads": 1,
            "allocator": "jemalloc"}
    mine = {"settings": {"steps": 8}, "hardware": zen4, "versions": {"torch": "2.14"},
            "rows": {"cake": {"runs": [{"seed": 1, "student_accuracy": 0.8}]}}}
    other = {"settings": {"steps": 8}, "hardware": zen3, "versions": {"torch": "2.11"},
             "rows": {"cake": {"runs": [{"seed": 2, "student_accuracy": 0.7}]}},
             "budget_curve": [{"seed": 2, "stride": 4, "steps": 4, "student_accuracy": 0.5}]}
    path = tmp_path / "other.json"
    path.write_text(__import__("json").dumps(other))
    for merged in (bench.merge(mine, path, tmp_path / "out.json"), search.merge(mine, other)):
        runs = {r["seed"]: r for r in merged["rows"]["cake"]["runs"]}
        assert runs[1]["hardware"] == zen4 and runs[2]["hardware"] == zen3
        assert runs[1]["versions"] == {"torch": "2.14"} and runs[2]["versions"] == {"torch": "2.11"}
        assert merged["hardware"] == zen4  # the file's own, as before
        assert "AMD EPYC" in bench.machines_by_seed(merged) and "seed 2" in bench.machines_by_seed(merged)
    assert bench.merge(mine, path, tmp_path / "out.json")["budget_curve"][0]["hardware"] == zen3
    assert "hardware" not in mine["rows"]["cake"]["runs"][0]  # the inputs are not changed
    assert bench.machines_by_seed(mine) is None  # one machine: nothing to say
    # a run that records its own machine keeps it when its file is tagged
    own = {**mine, "rows": {"cake": {"runs": [{"seed": 0, "hardware": zen3}]}}}
    assert bench.with_run_hardware(own)["rows"]["cake"]["runs"][0]["hardware"] == zen3


def test_runs_of_a_retrained_teacher_are_not_paired_with_the_old_ones(tmp_path):
    old = {"authors": {"weights": "aaaa", "test_accuracy": 0.9031, "val_accuracy": 0.9063}}
    new = {"authors": {"weights": "bbbb", "test_accuracy": 0.9026, "val_accuracy": 0.9047}}
    mine = {"settings": {"steps": 8}, "teachers": old, "rows": {"cake": {"runs": [{"seed": 0}]}}}
    other = {"settings": {"steps": 8}, "teachers": new, "rows": {"clamp-relabel": {"runs": [{"seed": 0}]}}}
    path = tmp_path / "other.json"
    path.write_text(__import__("json").dumps(other))
    with pytest.raises(SystemExit, match="retrained teacher"):
        search.merge(mine, other)
    with pytest.raises(SystemExit, match="retrained teacher"):
        bench.merge(mine, path, tmp_path / "out.json")
    # a file from before the fingerprint: the accuracies still tell the teachers apart
    without_weights = {"authors": {k: v for k, v in new["authors"].items() if k != "weights"}}
    with pytest.raises(SystemExit, match="test_accuracy"):
        bench.check_same_teachers(old, without_weights, "x.json")
    bench.check_same_teachers(old, {"authors": dict(old["authors"])}, "x.json")  # the same teacher: fine
    bench.check_same_teachers(old, {"pad-flip-shift": new["authors"]}, "x.json")  # another recipe: fine
    assert search.merge(mine, {**other, "teachers": old})["rows"].keys() == {"cake", "clamp-relabel"}


def test_each_seed_keeps_its_own_teacher_and_a_seed_never_mixes_two(tmp_path):
    first = {"authors": {"weights": "aaaa", "test_accuracy": 0.9026, "val_accuracy": 0.9047}}
    second = {"authors": {"weights": "bbbb", "test_accuracy": 0.9070, "val_accuracy": 0.9060}}
    old_file = {"settings": {"steps": 8}, "teachers": first, "rows": {"cake": {"runs": [{"seed": 0}]}}}
    assert search.teachers_by_seed(old_file) == {"0": first}  # one teacher for the whole file, as before
    grown = search.with_teachers(old_file, [1], second, "x.json")  # a new seed, a retrained teacher: fine
    assert grown["teachers_by_seed"] == {"0": first, "1": second} and "teachers" not in grown
    search.with_teachers(grown, [1], second, "x.json")  # the same teacher again: fine
    with pytest.raises(SystemExit, match="seed 0, holds runs of another 'authors' teacher"):
        search.with_teachers(grown, [0], second, "x.json")
    # merging: different seeds may have different teachers, one seed may not
    other = {"settings": {"steps": 8}, "teachers_by_seed": {"2": second},
             "rows": {"cake": {"runs": [{"seed": 2}]}}}
    assert search.merge(grown, other)["teachers_by_seed"] == {"0": first, "1": second, "2": second}
    with pytest.raises(SystemExit, match="seed 0"):
        search.merge(grown, {**other, "teachers_by_seed": {"0": second}})


def test_a_kept_teacher_file_comes_before_the_machine_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "KEPT_TEACHERS", tmp_path)
    paper = bench.SIZES["paper"]
    assert bench.teacher_path("authors", paper) == bench.HERE / "cache" / "fmnist-lenet5-authors-e30.pt"
    (tmp_path / "fmnist-lenet5-authors-e30.pt").write_bytes(b"")
    assert bench.teacher_path("authors", paper) == tmp_path / "fmnist-lenet5-authors-e30.pt"
    assert bench.teacher_path("pad-flip-shift", paper).parent == bench.HERE / "cache"  # only the kept recipe


def test_the_teacher_fingerprint_changes_with_any_weight(tiny_teacher):
    before = bench.weights_fingerprint(tiny_teacher)
    assert before == bench.weights_fingerprint(tiny_teacher) and len(before) == 16
    with torch.no_grad():
        next(tiny_teacher.parameters()).view(-1)[0] += 1e-6
    assert bench.weights_fingerprint(tiny_teacher) != before


def test_sample_statistics_count_what_the_teacher_says_and_the_pixels_out_of_range():
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    x = torch.tensor([[0.0, 0.5], [1.5, -0.5], [-3.0, 2.0], [0.9, -1.0]])
    stats = samples.sample_statistics(x, soft, labels=torch.tensor([0, 1, 2, 2]))
    assert stats["in target class"] == pytest.approx(75.0)  # the third is predicted 1, not 2
    assert stats["largest class"] == pytest.approx(50.0) and stats["largest class index"] == 1
    assert stats["teacher's top probability"] == pytest.approx(100 * (0.7 + 0.8 + 0.6 + 0.6) / 4)
    assert stats["outside [-1, 1]"] == pytest.approx(100 * 3 / 8)  # 1.5, -3.0, 2.0; not the boundary -1.0


def test_the_sample_statistics_schedules_are_the_search_candidates_syntheses():
    paper, low = (search.BY_NAME[c].synthesis for c, _ in samples.SCHEDULES.values())
    assert paper == {} and low == {"lr": 1e-2, "lr_decades": 2}


@pytest.fixture
def student_data(tmp_path, monkeypatch):
    """12 random FashionMNIST-shaped (train, test) sets; the student's checkpoints in tmp_path."""
    monkeypatch.setattr(bench, "HERE", tmp_path)
    torch.manual_seed(0)
    x = torch.randn(12, *bench.SHAPE)
    train = torch.utils.data.TensorDataset(x, torch.softmax(torch.randn(12, bench.CLASSES), -1))
    return train, torch.utils.data.TensorDataset(x, torch.randint(0, bench.CLASSES, (12,)))


def test_a_row_may_set_the_students_batch_size(student_data):
    train, test = student_data
    size = bench.SIZES["smoke"]
    row = bench.Row("small-batch", "", distill=dict(batch_size=4))
    _, info = bench.student_on(train, size, 0, test, "cpu", row=row, checkpoint="small-batch")
    assert info["distill"]["batch_size"] == 4 != size.student_batch
    _, info = bench.student_on(train, size, 0, test, "cpu", checkpoint="size-batch")
    assert info["distill"]["batch_size"] == size.student_batch


def test_a_resumed_student_reports_the_time_of_all_its_epochs(student_data):
    train, test = student_data
    size = bench.SIZES["smoke"]
    _, first = bench.student_on(train, size, 0, test, "cpu", checkpoint="resumed")
    _, again = bench.student_on(train, size, 0, test, "cpu", checkpoint="resumed")  # every epoch on disk
    assert again["curve"] == first["curve"] and again["student_accuracy"] == first["student_accuracy"]
    assert again["distill_seconds"] == first["distill_seconds"] > 0 and again["wall_seconds"] > 0
