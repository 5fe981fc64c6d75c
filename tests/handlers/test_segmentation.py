"""Segmentation report: MONAI's per-image Dice / IoU / HD95 through an evaluator against NumPy references, JSON
layout, undefined values, overlays, best-only writing, and unreadable images left out and listed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import HausdorffDistance, MeanDice, MeanIoUHandler, from_engine
from monai.transforms import AsDiscreted, Compose
from PIL import Image

from monai_ext.data.datasets import SkipCorruptDataset
from monai_ext.handlers.metric_values import MeanDiceOrNaN
from monai_ext.handlers.segmentation import SegmentationReportWriter, segmentation_report
from tests.data.unreadable import BAD, image_folder, load, square_mask, with_masks


def _disc(size: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    rows, cols = np.ogrid[:size, :size]
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).astype(np.int64)


class _Lookup(torch.nn.Module):
    """A 'network' returning fixed logits for the image whose first pixel holds its index."""

    def __init__(self, predictions: list[np.ndarray], classes: int) -> None:
        super().__init__()
        self.logits = torch.stack([torch.nn.functional.one_hot(torch.as_tensor(p), classes).permute(2, 0, 1).float()
                                   for p in predictions])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].long()]


def dice_evaluator(data, network, writer, batch_size: int) -> SupervisedEvaluator:
    """MONAI's evaluator of a two-class network over ``data`` with the mean Dice and ``writer`` attached."""
    pair = from_engine(["pred", "label"])
    return SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=torch.utils.data.DataLoader(data, batch_size=batch_size),
        network=network,
        postprocessing=Compose([AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=2)]),
        key_val_metric={"val_mean_dice": MeanDice(include_background=False, output_transform=pair)},
        val_handlers=[writer],
    )


def _evaluate(predictions, truths, tmp_path, classes=2, best_only=False, runs=1, restored=None, dice=MeanDice,
              present=None, metric_prefix="val_"):
    data = [{"image": torch.full((1, 32, 32), float(i)), "label": torch.as_tensor(t)[None], "id": f"img{i}"}
            for i, t in enumerate(truths)]
    for item, classes_present in zip(data, present or []):  # LoadMaskd(record_presence=True)'s, at the mask's size
        item["label_present"] = np.array(classes_present)
    writer = SegmentationReportWriter(tmp_path, ["background"] + [f"c{k}" for k in range(1, classes)],
                                      prefix="test_", num_overlays=2, best_only=best_only,
                                      metric_prefix=metric_prefix)
    if restored is not None:
        writer.load_state_dict(restored)
    pair = from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=torch.utils.data.DataLoader(data, batch_size=2),
        network=_Lookup(predictions, classes),
        postprocessing=Compose([AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=classes)]),
        key_val_metric={f"{metric_prefix}mean_dice": dice(include_background=False, output_transform=pair)},
        additional_metrics={
            f"{metric_prefix}mean_iou": MeanIoUHandler(include_background=False, output_transform=pair),
            f"{metric_prefix}hd95": HausdorffDistance(include_background=False, percentile=95, output_transform=pair)},
        val_handlers=[writer],
    )
    for _ in range(runs):
        evaluator.run()
    report = tmp_path / "test_report.json"
    return (json.loads(report.read_text()) if report.is_file() else {}), writer


def test_per_image_dice_and_iou_match_numpy(tmp_path) -> None:
    truths = [_disc(32, (16, 16), 8), _disc(32, (10, 12), 5), _disc(32, (20, 20), 6)]
    predictions = [_disc(32, (16, 18), 8), _disc(32, (10, 12), 5), _disc(32, (22, 19), 4)]
    report, _ = _evaluate(predictions, truths, tmp_path)
    assert report["n"] == 3 and [e["id"] for e in report["per_image"]] == ["img0", "img1", "img2"]
    for entry, p, t in zip(report["per_image"], predictions, truths):
        inter = float((p & t).sum())
        assert entry["dice"]["c1"] == pytest.approx(2 * inter / (p.sum() + t.sum()), abs=1e-6)
        assert entry["iou"]["c1"] == pytest.approx(inter / (p | t).sum(), abs=1e-6)
    assert report["per_image"][1]["hd95"]["c1"] == 0.0  # identical masks
    assert report["per_class"]["c1"]["dice"] == pytest.approx(np.mean([e["dice"]["c1"] for e in report["per_image"]]))
    assert report["mean_dice"] == pytest.approx(report["score"])
    assert sorted(p.name for p in (tmp_path / "test_overlays").iterdir()) == ["img0.png", "img1.png"]


def test_metrics_named_by_the_part_scored_fill_the_report(tmp_path) -> None:
    """evaluate.yaml names its metrics by the part it scores (test_mean_dice, as the classification bundle's
    test_macro_f1): the report reads their details by that name and records it as its key metric."""
    truths = [_disc(32, (16, 16), 8), _disc(32, (10, 12), 5)]
    report, writer = _evaluate([_disc(32, (16, 18), 8), truths[1]], truths, tmp_path, metric_prefix="test_")
    assert report["key_metric"] == writer.key_metric == "test_mean_dice"
    assert report["per_image"][1] == {"id": "img1", "dice": {"c1": 1.0}, "iou": {"c1": 1.0}, "hd95": {"c1": 0.0}}
    assert report["mean_dice"] == pytest.approx(report["score"]) and report["mean_hd95"] is not None


def test_undefined_values_are_null_and_excluded_from_means(tmp_path) -> None:
    """Class 2 absent from truth and prediction of image 0 (Dice undefined); image 1 predicts nothing (no HD95)."""
    truths = [_disc(32, (16, 16), 8), _disc(32, (16, 16), 8) * 2]
    predictions = [_disc(32, (16, 16), 8), np.zeros((32, 32), np.int64)]
    report, _ = _evaluate(predictions, truths, tmp_path, classes=3)
    first, second = report["per_image"]
    assert first["dice"] == {"c1": pytest.approx(1.0), "c2": None}
    assert second["dice"]["c2"] == 0.0 and second["hd95"]["c2"] is None
    assert report["per_class"]["c2"]["dice"] == 0.0 and report["hd95_undefined"] == 3


def test_the_reports_mean_dice_is_monais_score_when_an_image_holds_two_classes(tmp_path) -> None:
    """Image 0 holds classes 1 and 2 (Dice 1 and about 0.6), image 1 class 1 only (Dice 1): MONAI averages each image
    over its classes first (0.9), pooling every (image, class) pair gave 0.87 and a cross-validation table other
    than the logged score."""
    two = _disc(32, (10, 10), 6) + 2 * _disc(32, (22, 22), 6)
    truths = [two, _disc(32, (16, 16), 8)]
    predictions = [_disc(32, (10, 10), 6) + 2 * _disc(32, (24, 22), 4), _disc(32, (16, 16), 8)]
    report, _ = _evaluate(predictions, truths, tmp_path, classes=3)
    dice = [[e["dice"][c] for c in ("c1", "c2")] for e in report["per_image"]]
    expected = np.mean([np.mean([d for d in row if d is not None]) for row in dice])
    assert report["mean_dice"] == pytest.approx(expected) == pytest.approx(report["score"])
    assert report["mean_dice"] != pytest.approx(np.mean([d for row in dice for d in row if d is not None]))


def test_an_id_of_zero_is_kept(tmp_path) -> None:
    writer = SegmentationReportWriter(tmp_path, ["background", "lesion"])
    engine = type("E", (), {})()
    engine.state = type("S", (), {"batch": [{"id": 0, "image_path": "/x/a.png"}, {"id": 1}], "output": None})()
    writer._collect(engine)
    assert writer._ids == ["0", "1"]


def test_training_validation_without_any_lesion_stops_at_once(tmp_path) -> None:
    empty = [np.zeros((32, 32), np.int64)] * 2
    with pytest.raises(ValueError, match=r"none of the 2 validation masks holds a foreground class \(c1\)"):
        _evaluate(empty, empty, tmp_path, best_only=True)
    report, _ = _evaluate(empty, empty, tmp_path)  # an evaluation still writes its report
    assert report["n"] == 2 and report["mean_dice"] is None


@pytest.mark.parametrize("predicted", [True, False])
def test_a_lesion_the_resize_removed_is_listed_apart_not_as_a_lesion_free_image(tmp_path, caplog, predicted) -> None:
    """img1's mask held a lesion at its own size (label_present) that is gone at the training size: it was counted
    under empty_truth, and a lesion predicted there named as a false positive on a lesion-free image."""
    empty, disc = np.zeros((32, 32), np.int64), _disc(32, (16, 16), 8)
    truths, predictions = [disc, empty, empty], [disc, disc if predicted else empty, disc]
    present = [[True], [True], [False]]  # img2 is lesion-free at any size: its false positive stays one
    with caplog.at_level("WARNING", logger="monai_ext.handlers.segmentation"):
        report, _ = _evaluate(predictions, truths, tmp_path, present=present)
    assert report["lost_in_resize"] == {"c1": ["img1"]}
    assert report["empty_truth"] == {"c1": {"images": 1, "predicted": ["img2"]}}
    assert report["per_image"][1]["dice"]["c1"] is None  # still no Dice at the training size
    assert "1 image(s) hold a c1 region that the resize to the training size 32x32 removes" in caplog.text
    assert caplog.text.rstrip().endswith(": img1")


def test_validation_whose_lesions_the_resize_removed_says_so(tmp_path) -> None:
    empty = [np.zeros((32, 32), np.int64)] * 2
    with pytest.raises(ValueError, match=r"none of the 2 validation masks holds a foreground class \(c1\) at the "
                                         r"training size 32x32 \(1 hold one that the resize to it removes"):
        _evaluate(empty, empty, tmp_path, best_only=True, present=[[True], [False]])


def test_an_earlier_runs_overlays_are_not_left_beside_this_reports(tmp_path) -> None:
    (tmp_path / "test_overlays").mkdir()
    (tmp_path / "test_overlays" / "other_dataset_case.png").write_bytes(b"another model's picture")
    truths = [_disc(32, (16, 16), 8), _disc(32, (10, 12), 5)]
    _evaluate(truths, truths, tmp_path)
    assert sorted(p.name for p in (tmp_path / "test_overlays").iterdir()) == ["img0.png", "img1.png"]


def test_best_only_keeps_the_first_of_equal_scores(tmp_path) -> None:
    truths = [_disc(32, (16, 16), 8)]
    _, writer = _evaluate(truths, truths, tmp_path, best_only=True, runs=2)
    assert writer.best == pytest.approx(1.0)


@pytest.mark.parametrize("restored_best, written", [(1.0, False), (0.5, True)])
def test_a_resumed_best_only_writer_writes_only_what_beats_the_restored_best(tmp_path, restored_best, written) -> None:
    """The best Dice so far comes back from a training checkpoint: a perfect prediction (Dice 1.0) that does not beat
    it leaves the best epoch's report and overlays in place."""
    truths = [_disc(32, (16, 16), 8)]
    report, writer = _evaluate(truths, truths, tmp_path, best_only=True, restored={"best": restored_best})
    assert bool(report) == written and (tmp_path / "test_overlays").is_dir() == written
    assert writer.state_dict() == {"best": pytest.approx(max(restored_best, 1.0))}


@pytest.mark.parametrize("on_disk, written", [(1.0, False), (0.8, True)])
def test_a_resumed_writer_keeps_a_better_report_written_after_its_checkpoint(tmp_path, on_disk, written) -> None:
    """The killed run wrote a better epoch's report after its last checkpoint (best 0.5): the replayed evaluation
    (Dice 1.0) replaces it only when better than that report, as model.pt is kept."""
    (tmp_path / "test_report.json").write_text(json.dumps({"score": on_disk, "written": "after the checkpoint"}))
    truths = [_disc(32, (16, 16), 8)]
    _, writer = _evaluate(truths, truths, tmp_path, best_only=True, restored={"best": 0.5})
    assert ("written" not in json.loads((tmp_path / "test_report.json").read_text())) == written
    assert writer.best == pytest.approx(1.0 if written else on_disk)


def test_report_checks_detail_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected \(2, 1\)"):
        segmentation_report({"dice": torch.zeros(2, 2)}, ["a", "b"], ["background", "lesion"])


class _Squares(torch.nn.Module):
    """Predicts the square mask of the case whose index the image's pixels hold (the truth of a good image)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = torch.stack([torch.as_tensor(square_mask(int(v))) for v in x[:, 0, 0, 0].tolist()]).long()
        return torch.nn.functional.one_hot(masks, 2).permute(0, 3, 1, 2).float()


def test_unreadable_images_are_left_out_of_the_per_image_report_and_listed(tmp_path) -> None:
    """11 cases, 3 unreadable: the per-image report holds the 8 readable ones once each, paired with their own masks
    (Dice 1), and lists the 3 others with their reason (a substitute would repeat a neighbour under its id)."""
    items = with_masks(image_folder(tmp_path, good=8), tmp_path)
    dataset = SkipCorruptDataset(items, load(keys=("image", "label")))  # the bundles' call
    writer = SegmentationReportWriter(tmp_path, ["background", "lesion"], prefix="test_", num_overlays=0)
    evaluator = dice_evaluator(dataset, _Squares(), writer, batch_size=3)
    evaluator.run()
    report = json.loads((tmp_path / "test_report.json").read_text())
    assert [e["id"] for e in report["per_image"]] == [f"case{i}" for i in range(8)] and report["n"] == 8
    assert [e["dice"]["lesion"] for e in report["per_image"]] == pytest.approx([1.0] * 8)
    assert sorted(Path(s["image"]).name for s in report["skipped"]) == sorted(BAD)
    assert all(s["reason"] for s in report["skipped"])


def test_validation_without_lesions_says_how_many_items_were_left_out_as_unreadable(tmp_path) -> None:
    """With --mask_encoding index on 0/255 masks every mask with a lesion was left out, and the run ended saying only
    that the few lesion-free ones left held no lesion."""
    items = with_masks(image_folder(tmp_path, good=2), tmp_path)
    for item in items:  # the readable ones lesion-free
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(item["label"])
    dataset = SkipCorruptDataset(items, load(keys=("image", "label")))
    writer = SegmentationReportWriter(tmp_path, ["background", "lesion"], num_overlays=0, best_only=True)
    evaluator = dice_evaluator(dataset, _Squares(), writer, batch_size=3)
    with pytest.raises(ValueError, match=r"none of the 2 validation masks holds a foreground class \(lesion\): .*; 3 "
                                         r"more validation item\(s\) were left out as unreadable, the first "
                                         r"'[^']*empty\.png': \S"):
        evaluator.run()


def test_false_positives_on_images_without_the_class_are_counted_though_dice_leaves_them_out(tmp_path) -> None:
    """MONAI's DiceMetric and MeanIoU (``ignore_empty=True``) give NaN wherever the truth lacks a class, whatever
    was predicted: a BUSI 'normal' image with a large false positive is then as null as a correctly empty one. The
    report counts such images per class and names the ones with a prediction, so no false positive goes unseen."""
    empty = np.zeros((32, 32), np.int64)
    truths = [_disc(32, (16, 16), 8), empty, empty, _disc(32, (16, 16), 8)]
    predictions = [_disc(32, (16, 16), 8), _disc(32, (10, 10), 6) * 2, empty, empty]
    report, _ = _evaluate(predictions, truths, tmp_path, classes=3)
    assert [e["dice"]["c1"] for e in report["per_image"]] == [pytest.approx(1.0), None, None, 0.0]
    assert report["empty_truth"] == {"c1": {"images": 2, "predicted": []},
                                     "c2": {"images": 4, "predicted": ["img1"]}}


@pytest.mark.parametrize("predicted", ["empty", "false positive"])
def test_a_set_without_lesions_writes_a_strict_json_report(tmp_path, predicted) -> None:
    """Scoring only lesion-free images (BUSI 'normal') to count false positives: the Dice of the set is undefined,
    and the report held a bare NaN that jq, browsers and strict readers refuse; it is null, as per image."""
    empty = np.zeros((32, 32), np.int64)
    prediction = empty if predicted == "empty" else _disc(32, (10, 10), 6)
    _evaluate([prediction, empty], [empty, empty], tmp_path, dice=MeanDiceOrNaN)  # as the bundle's
    text = (tmp_path / "test_report.json").read_text()

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    report = json.loads(text, parse_constant=refuse)
    assert report["score"] is None and report["n"] == 2
    assert report["empty_truth"]["c1"]["images"] == 2


def test_overlays_of_images_named_by_long_paths_are_written_under_names_the_filesystem_takes(tmp_path) -> None:
    """A hand-written datalist has no "id": images are named by their path, flattened into the overlay's name. A
    deep folder made that name longer than 255 bytes and the evaluation ended in 'File name too long'."""
    deep = "/data/" + "/".join(["ultrasound_study_folder_" + "x" * 40] * 5)
    truth = _disc(32, (16, 16), 8)
    data = [{"image": torch.full((1, 32, 32), float(i)), "label": torch.as_tensor(truth)[None],
             "image_path": f"{deep}/case {i}.png"} for i in range(2)]
    writer = SegmentationReportWriter(tmp_path, ["background", "lesion"], prefix="test_", num_overlays=2)
    dice_evaluator(data, _Lookup([truth, truth], 2), writer, batch_size=2).run()
    report = json.loads((tmp_path / "test_report.json").read_text())
    assert [e["id"] for e in report["per_image"]] == [d["image_path"] for d in data]
    names = sorted(p.name for p in (tmp_path / "test_overlays").iterdir())
    assert len(names) == 2 and all(len(n.encode()) <= 255 for n in names)


def test_report_counts_say_what_the_dice_is_over_and_the_false_positives(tmp_path) -> None:
    """The log printed ``n 3 ... Dice 0.5`` for a Dice over 2 images; the lesion-free image with a predicted lesion
    showed only inside the JSON."""
    from monai_ext.handlers.segmentation import report_counts

    report = {"n": 3, "per_image": [{"dice": {"lesion": 0.4}}, {"dice": {"lesion": 0.6}}, {"dice": {"lesion": None}}],
              "empty_truth": {"lesion": {"images": 1, "predicted": ["case03"]}}}
    assert report_counts(report) == "Dice over 2 of 3 image(s); 1 without lesion, 1 of them with lesion predicted"
    assert report_counts({"n": 2, "per_image": [{"dice": {"a": None, "b": 0.5}}, {"dice": {"a": None, "b": None}}],
                          "empty_truth": {"a": {"images": 0, "predicted": []}}}) == "Dice over 1 of 2 image(s)"
