"""Classification report of an evaluation over a split with unreadable files: each readable image counts once (n,
per-class support, confusion matrix) and the unreadable ones are listed with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from monai_ext.data.datasets import SkipCorruptDataset
from monai_ext.engines.classification import ClassificationEvaluator
from monai_ext.engines.metrics import ClassificationReport, MacroF1
from monai_ext.handlers.reports import ClassificationReportWriter, is_new_best
from tests.data.unreadable import BAD, image_folder, load

CLASSES = ["even", "odd"]


class _Parity(torch.nn.Module):
    """A 'network' that knows the answer: the image's pixels hold its index, whose parity is its label."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long() % 2, 2).float() * 10


def _evaluate(tmp_path: Path, items: list[dict], writer: ClassificationReportWriter | None = None) -> dict:
    dataset = SkipCorruptDataset(items, load())  # the bundles' call: a deterministic chain is an evaluation one
    evaluator = ClassificationEvaluator(
        device=torch.device("cpu"), val_data_loader=torch.utils.data.DataLoader(dataset, batch_size=3),
        network=_Parity(), decollate=False,
        key_val_metric={"val_macro_f1": MacroF1(CLASSES)},
        additional_metrics={"report": ClassificationReport(CLASSES)},
        val_handlers=[writer or ClassificationReportWriter(tmp_path, CLASSES, prefix="test_")],
    )
    evaluator.run()
    report = tmp_path / "test_report.json"
    return json.loads(report.read_text()) if report.is_file() else {}


def test_unreadable_files_are_left_out_of_the_counts_and_listed(tmp_path) -> None:
    items = image_folder(tmp_path, good=8)  # 11 items: 8 readable (4 even, 4 odd) and 3 unreadable
    report = _evaluate(tmp_path, items)
    assert report["n"] == 8
    assert {name: c["support"] for name, c in report["per_class"].items()} == {"even": 4, "odd": 4}
    assert report["confusion_matrix"] == [[4, 0], [0, 4]] and report["macro_f1"] == 1.0
    assert sorted(Path(s["image"]).name for s in report["skipped"]) == sorted(BAD)
    assert all(s["reason"] for s in report["skipped"])


def test_a_clean_split_reports_nothing_skipped(tmp_path) -> None:
    items = [item for item in image_folder(tmp_path, good=5) if item["id"] not in BAD]
    report = _evaluate(tmp_path, items)
    assert report["n"] == 5 and report["skipped"] == []


def test_a_part_of_one_class_leaves_no_earlier_roc_figure_beside_its_report(tmp_path) -> None:
    """An evaluation whose test part holds one class has no ROC: the earlier run's test_roc.png, with its AUC, stayed
    beside a report saying the AUC is undefined."""
    items = [item for item in image_folder(tmp_path, good=8) if item["id"] not in BAD]
    _evaluate(tmp_path, items)
    assert (tmp_path / "test_roc.png").is_file()
    even = [item for item in items if item["label"] == 0]
    report = _evaluate(tmp_path, even)
    assert report["roc"] == {} and report["auc"] is None
    assert not (tmp_path / "test_roc.png").exists() and (tmp_path / "test_confusion_matrix.png").is_file()


@pytest.mark.parametrize("restored_best, written", [(1.0, False), (0.5, True)])
def test_a_resumed_best_only_writer_writes_only_what_beats_the_restored_best(tmp_path, restored_best, written) -> None:
    """A resumed training run restores the writer's best from its checkpoint: an evaluation scoring no better (the
    perfect 'network' scores macro-F1 1.0) leaves the best epoch's report in place."""
    items = [item for item in image_folder(tmp_path, good=4) if item["id"] not in BAD]
    saved = ClassificationReportWriter(tmp_path, CLASSES, prefix="test_", best_only=True)
    saved.best = restored_best
    writer = ClassificationReportWriter(tmp_path, CLASSES, prefix="test_", best_only=True)
    writer.load_state_dict(saved.state_dict())
    report = _evaluate(tmp_path, items, writer)
    assert bool(report) == written and writer.best == max(restored_best, 1.0)


@pytest.mark.parametrize("on_disk, written", [(1.0, False), (0.8, True), (None, True)])
def test_a_resumed_writer_keeps_a_better_report_written_after_its_checkpoint(tmp_path, on_disk, written) -> None:
    """The killed run wrote a better epoch's report (and model.pt) after its last checkpoint, whose best was 0.5; the
    replayed evaluation (macro-F1 1.0 here) replaces it only when better than that report, as model.pt is kept."""
    report = tmp_path / "test_report.json"
    if on_disk is not None:
        report.write_text(json.dumps({"macro_f1": on_disk, "written": "after the checkpoint"}))
    items = [item for item in image_folder(tmp_path, good=4) if item["id"] not in BAD]
    writer = ClassificationReportWriter(tmp_path, CLASSES, prefix="test_", best_only=True)
    writer.load_state_dict({"best": 0.5})
    assert writer.best == (on_disk if on_disk is not None else 0.5)
    _evaluate(tmp_path, items, writer)
    assert ("written" not in json.loads(report.read_text())) == written


@pytest.mark.parametrize("scores, best", [([float("nan"), 0.5], 0.5), ([0.5, float("nan"), 0.4], 0.5),
                                          ([float("inf"), 0.3], 0.3)])
def test_a_non_finite_score_is_never_the_best(scores, best) -> None:
    """A diverged epoch's NaN taken as the best would either never be beaten or let every later epoch through."""
    kept = None
    for score in scores:
        if is_new_best(score, kept):
            kept = score
    assert kept == best


@pytest.mark.parametrize("label, missing", [(0, "odd"), (1, "even")])
def test_a_part_missing_a_class_says_so_and_why_there_is_no_roc(tmp_path, caplog, label, missing) -> None:
    """A benign-only test part ended with macro-F1, AUC null and no test_roc.png, and nothing in the log."""
    items = [item for item in image_folder(tmp_path, good=8) if item["id"] not in BAD and item["label"] == label]
    with caplog.at_level("INFO", logger="monai_ext.handlers.reports"):
        report = _evaluate(tmp_path, items)
    assert report["classes_without_images"] == [missing]
    assert f"no images of class(es) {missing} in the evaluated part" in caplog.text and "macro-F1" in caplog.text
    assert "no ROC figure" in caplog.text and "at least two classes" in caplog.text
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and r.name == "monai_ext.handlers.reports"]
    assert len(warnings) == 1, warnings  # the missing class, once; the ROC line is information


def test_a_part_with_every_class_warns_of_none(tmp_path, caplog) -> None:
    items = [item for item in image_folder(tmp_path, good=6) if item["id"] not in BAD]
    with caplog.at_level("WARNING", logger="monai_ext.handlers.reports"):
        report = _evaluate(tmp_path, items)
    assert report["classes_without_images"] == [] and "no images of class" not in caplog.text
