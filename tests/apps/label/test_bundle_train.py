"""BundleTrainTask (apps/label/bundle_train.py) without a server or a real training: a task must name its metric;
a call writes the datalist, runs the bundle from the served checkpoint into a fresh run folder, publishes the best
model with its lineage, keeps a model of another lineage aside, and reports the best metric (null when no epoch had
one), which stats() returns later. Runs in MONAI Label's environment; the bundle run is a stand-in."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
from pathlib import Path
from monai_ext.apps.label.bundle_train import BundleTrainTask
from monai_ext.apps.label.lineage import Lineage, lineage_file
from monai_ext.apps.label.train_settings import TRAIN_DEFAULTS

tmp = Path(sys.argv[1])
checkpoint, studies = tmp / "served.pt", tmp / "studies"
checkpoint.write_bytes(b"served")
studies.mkdir()
out = {}

class NoMetric(BundleTrainTask):
    def write_datalist(self, items, out, params): raise AssertionError
    def checkpoint_overrides(self, checkpoint): return {}

try:
    NoMetric("x", tmp, lambda: checkpoint, tmp / "model" / "m.pt", Lineage.of(checkpoint, str(studies)), ["a"], {})
except TypeError as e:
    out["no_metric"] = str(e)

class Task(BundleTrainTask):
    metric = "val_score"
    runs = []
    history = [{"val_score": 0.5}, {"val_score": 0.75}, {"val_score": None}]

    def write_datalist(self, items, out, params, memory=None):
        out.write_text(json.dumps({"train": items[:2], "validation": items[2:], "test": []}))
        return out, {"bad.json": "not a class"}, {"white.png": "inverted?"}

    def checkpoint_overrides(self, checkpoint): return {}

    def _run_bundle(self, datalist, start_from, run_dir, params, train_size):
        type(self).runs.append({"start_from": str(start_from), "run_dir_existed": run_dir.exists(),
                                "train_size": train_size, "max_epochs": params["max_epochs"]})
        (run_dir / "models").mkdir(parents=True)
        (run_dir / "eval").mkdir()
        (run_dir / "models" / "model.pt").write_bytes(b"fine-tuned %d" % len(type(self).runs))
        (run_dir / "eval" / "metrics.json").write_text(json.dumps(type(self).history))

class Store:
    def datalist(self):
        return [{"image": f"{i}.png", "label": f"{i}.json"} for i in range(3)]

published = tmp / "model" / "usf.pt"
lineage = Lineage.of(checkpoint, str(studies))
task = Task("fine-tune", tmp, lambda: checkpoint, published, lineage, ["a", "b"], {})
out["config"] = task.config() == TRAIN_DEFAULTS
out["stats_before"] = task.stats()
stale = task.work / "run" / "stale.txt"
stale.parent.mkdir(parents=True)
stale.write_text("an older training")
out["summary"] = task({"max_epochs": 3, "val_fraction": "0.3"}, Store())
out["runs"] = Task.runs
out["published"] = published.read_bytes().decode()
out["record"] = json.loads(lineage_file(published).read_text())
out["stale_left"] = stale.exists()
out["stats_after"] = task.stats()
try:
    task({"max_epochs": 0}, Store())
except ValueError as e:
    out["bad_param"] = str(e)
# a model of another lineage at the published place is kept aside; an epoch without a value is passed over
lineage_file(published).write_text(json.dumps({"checkpoint": "other", "sha256": "0" * 64, "studies": "elsewhere"}))
Task.history = [{"val_score": None}, {"val_score": 0.25}]
second = task({}, Store())
out["second"] = second
out["kept_content"] = Path(second.get("kept_previous", tmp / "missing")).read_bytes().decode() \
    if second.get("kept_previous") else None

# a result not worth publishing, or a failed run, leaves the published model, its record and the summary alone
def state():
    return [published.read_bytes(), lineage_file(published).read_bytes(), (task.work / "train_stats.json").read_bytes()]

before = state()
out["refused"] = {}
for name, history in {"null": [{"val_score": None}], "nan": [{"val_score": float("nan")}, {"val_score": None}],
                      "inf": [{"val_score": float("inf")}], "zero": [{"val_score": 0.0}, {"val_score": None}],
                      "no_epoch": []}.items():
    Task.history = history
    try:
        task({}, Store())
        out["refused"][name] = None
    except ValueError as e:
        out["refused"][name] = str(e)
Task.history = [{"val_score": 0.5}]

class Failing(Task):
    def _run_bundle(self, datalist, start_from, run_dir, params, train_size):
        try:  # as monai.bundle.run wraps an error of the training: the reason is its cause
            raise ValueError("the network's outputs are not finite (NaN or inf) for 3 of 3 images")
        except ValueError as e:
            raise RuntimeError("Failed to evaluate ConfigExpression: ('$@train#trainer.run()')") from e

try:
    Failing("fine-tune", tmp, lambda: checkpoint, published, lineage, ["a", "b"], {})({}, Store())
    out["failed"] = None
except RuntimeError as e:
    import traceback
    out["failed"] = str(e)
    out["failed_last_line"] = traceback.format_exception(e)[-1].strip()
out["unchanged"] = state() == before

# train_stats.json is replaced atomically: a failed replace leaves the previous summary whole and no temporary file
import monai_ext.io.atomic as atomic_module
stats_file = task.work / "train_stats.json"
before = stats_file.read_bytes()
real_replace = atomic_module.os.replace

def failing_replace(src, dst, *a, **k):
    if Path(dst).name == "train_stats.json":
        raise OSError("disk full")
    return real_replace(src, dst, *a, **k)

atomic_module.os.replace = failing_replace
try:
    task({}, Store())
    out["stats_replace_error"] = None
except OSError as e:
    out["stats_replace_error"] = str(e)
finally:
    atomic_module.os.replace = real_replace
out["stats_unchanged"] = stats_file.read_bytes() == before
out["tmp_left"] = sorted(p.name for p in task.work.iterdir() if p.name.endswith(".tmp"))

# the real _run_bundle: the app's overrides win over the checkpoint's, which fix what the app leaves alone
import monai.bundle
from monai_ext.apps.label.train_settings import train_parameters

class Real(Task):
    def checkpoint_overrides(self, checkpoint): return {"image_size": 224, "num_classes": 2}

Real._run_bundle = BundleTrainTask._run_bundle
captured = {}
real_run = monai.bundle.run
monai.bundle.run = lambda **settings: captured.update(settings)
try:
    real = Real("fine-tune", tmp, lambda: checkpoint, tmp / "model" / "real.pt", lineage, ["a", "b"],
                {"image_size": 64})
    real._run_bundle(tmp / "datalist.json", checkpoint, tmp / "real_run", train_parameters({}), 2)
finally:
    monai.bundle.run = real_run
out["bundle_settings"] = {k: str(captured.get(k)) for k in ("image_size", "num_classes", "init_checkpoint")}

# config() hands out a copy: a caller changing it leaves the defaults alone (restored: the interpreter is shared)
snapshot = dict(TRAIN_DEFAULTS)
try:
    task.config()["max_epochs"] = -1
    out["defaults_kept"] = TRAIN_DEFAULTS == snapshot
finally:
    TRAIN_DEFAULTS.clear()
    TRAIN_DEFAULTS.update(snapshot)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("bundle_train")))


def test_a_task_without_a_metric_is_refused(outcome) -> None:
    assert "must name its validation metric" in outcome["no_metric"]


def test_the_parameters_shown_are_the_defaults_and_no_stats_before_a_run(outcome) -> None:
    assert outcome["config"] is True and outcome["stats_before"] == {}


def test_a_run_starts_fresh_from_the_served_checkpoint_with_checked_parameters(outcome) -> None:
    (run,) = outcome["runs"][:1]
    assert run["start_from"].endswith("served.pt") and run["run_dir_existed"] is False
    assert run["train_size"] == 2 and run["max_epochs"] == 3
    assert outcome["stale_left"] is False
    assert "max_epochs" in outcome["bad_param"]


def test_the_best_model_is_published_with_its_lineage_and_summarised(outcome) -> None:
    summary = outcome["summary"]
    assert outcome["published"] == "fine-tuned 1"
    assert outcome["record"]["checkpoint"].endswith("served.pt") and outcome["record"]["studies"].endswith("studies")
    # which images the model trained and validated on, by datastore id: the next training keeps their parts
    assert outcome["record"]["split"] == {"trained": ["0", "1"], "validation": ["2"]}
    assert summary["train"] == 2 and summary["validation"] == 1 and summary["epochs"] == 3
    assert summary["best_val_score"] == 0.75 and summary["skipped_labels"] == {"bad.json": "not a class"}
    assert summary["suspect_labels"] == {"white.png": "inverted?"}  # trained on, and said where clients read
    assert "kept_previous" not in summary
    assert outcome["stats_after"] == summary


def test_the_shown_parameters_are_a_copy(outcome) -> None:
    assert outcome["defaults_kept"] is True


def test_a_later_run_starts_from_the_served_model_too(outcome) -> None:
    # the served() callable decides, not whether a published model exists
    assert len(outcome["runs"]) >= 2 and outcome["runs"][1]["start_from"].endswith("served.pt")


def test_the_summary_file_is_replaced_atomically(outcome) -> None:
    assert outcome["stats_replace_error"] == "disk full"
    assert outcome["stats_unchanged"] is True and outcome["tmp_left"] == []


def test_the_apps_overrides_win_over_the_checkpoints(outcome) -> None:
    settings = outcome["bundle_settings"]
    assert settings["image_size"] == "64" and settings["num_classes"] == "2"
    assert settings["init_checkpoint"].endswith("served.pt")


def test_a_model_of_another_lineage_is_kept_aside_and_an_undefined_metric_is_passed_over(outcome) -> None:
    second = outcome["second"]
    assert second["best_val_score"] == 0.25
    assert "superseded" in second["kept_previous"] and outcome["kept_content"] == "fine-tuned 1"


@pytest.mark.parametrize("history, reason", [
    ("null", "no validation of the 1 epochs gave a finite val_score (got [None])"),
    ("nan", "no validation of the 2 epochs gave a finite val_score (got [nan, None])"),
    ("inf", "no validation of the 1 epochs gave a finite val_score (got [inf])"),
    ("zero", "the best val_score of 2 epochs is 0.0: the model is no better than none, usf.pt kept"),
    ("no_epoch", "no validation of the 0 epochs gave a finite val_score (got [])"),
])
def test_a_result_without_a_finite_positive_best_metric_is_not_published(outcome, history: str, reason: str) -> None:
    """A diverged segmentation fine-tune (Dice 0.0) was published over the working model and could not be undone."""
    assert outcome["refused"][history] is not None and outcome["refused"][history].startswith(reason)
    assert outcome["unchanged"] is True


def test_a_failed_run_ends_on_its_root_cause_and_keeps_the_published_model(outcome) -> None:
    """MONAI Label shows a failed train's last 20 lines: they ended in the bundle's "Failed to evaluate
    ConfigExpression", the reason in the server's log alone."""
    expected = ("training failed, usf.pt kept: ValueError: the network's outputs are not finite (NaN or inf) for 3 "
                "of 3 images")
    assert outcome["failed"] == expected and outcome["failed_last_line"] == f"RuntimeError: {expected}"
    assert outcome["unchanged"] is True
