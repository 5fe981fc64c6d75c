"""Paired comparison of two starts over folds (against scipy's paired t-test), for classification and segmentation
summaries, kNN metrics of probe runs, and the cross-validation runner's linear-probe path on the subtle benchmark."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from monai_ext.apps.comparison import (
    add_knn_summary,
    comparison_table,
    knn_test_metrics,
    paired_differences,
    subtle_protocol,
)


def summary_of(folds: dict[str, dict[str, list[float]]]) -> dict:
    return {m: {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "folds": v} for k, v in ms.items()}
            for m, ms in folds.items()}


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_paired_interval_matches_scipy_ttest_rel(confidence: float) -> None:
    a, b = [0.71, 0.64, 0.80, 0.58, 0.69], [0.55, 0.60, 0.61, 0.57, 0.49]
    d = paired_differences(summary_of({"p": {"auc": a}, "r": {"auc": b}}), "p", "r", confidence)["auc"]
    ci = stats.ttest_rel(a, b).confidence_interval(confidence)
    assert d["mean"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert (d["low"], d["high"]) == pytest.approx((ci.low, ci.high))
    assert d["folds"] == pytest.approx(np.subtract(a, b).tolist())


@pytest.mark.parametrize("a, b, expected", [
    ([0.8, 0.7, 0.9], [0.7, 0.6, 0.8], "+10.0 [n/a: every pair differs by the same amount]"),  # once "+10.0 [+10.0, +10.0]"
    ([0.8, 0.7, 0.9], [0.7, 0.6, 0.7], "+13.3 [-1.0, +27.7]"),  # scipy: ttest_rel(a, b).confidence_interval()
    # the pairs differ (100.0 against 33.3): "every pair equal" said the opposite
    ([1.0, 1.0, 1.0], [1 / 3, 1 / 3, 1 / 3], "+66.7 [n/a: every pair differs by the same amount]"),
    ([0.8], [0.7], "+10.0 [n/a]"),  # one pair: no interval, and no claim about pairs
    ([0.8, 0.6], [0.8, 0.6], "+0.0 [n/a: every pair equal]"),  # here they are
])
def test_an_interval_without_width_is_not_printed_as_certainty(a, b, expected) -> None:
    from monai_ext.apps.comparison import difference_text

    assert difference_text(paired_differences(summary_of({"p": {"auc": a}, "r": {"auc": b}}), "p", "r")["auc"]) == expected


def _cv_table(unit: str) -> str:
    a, b = [0.71, 0.64, 0.80, 0.58, 0.69], [0.55, 0.60, 0.61, 0.57, 0.49]
    if unit == "folds":
        return comparison_table(summary_of({"pretrained": {"auc": a}, "random": {"auc": b}}))
    from monai_ext.apps.label_efficiency import CURVE_METRICS, efficiency_table

    summary = summary_of({"pretrained": {m: a for m in CURVE_METRICS}, "random": {m: b for m in CURVE_METRICS}})
    return efficiency_table({"10": {"summary": summary, "paired_differences": paired_differences(
        summary, "pretrained", "random")}}, "subtle", repeats=5)


@pytest.mark.parametrize("unit", ["folds", "repeats"])
def test_the_tables_call_the_interval_an_unadjusted_paired_t_over_overlapping_folds(unit: str) -> None:
    """The folds' (and the label-efficiency repeats') training sets overlap, so the paired t, which takes them as
    independent, is too narrow: the tables printed "95 % paired-t interval" as if it told whether a gap is real."""
    table = _cv_table(unit)
    assert f"mean [95 % unadjusted paired-t interval; the {unit} share training images, so it is too narrow]" in table
    assert "[95 % paired-t interval]" not in table
    if unit == "folds":
        assert "| metric | difference [95 % CI, unadjusted] | per fold |" in table
    # the numbers stay scipy's paired t: only the words around them changed
    a, b = [0.71, 0.64, 0.80, 0.58, 0.69], [0.55, 0.60, 0.61, 0.57, 0.49]
    ci = stats.ttest_rel(a, b).confidence_interval()
    assert f"{100 * np.mean(np.subtract(a, b)):+.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]" in table


def test_one_fold_has_no_interval_and_missing_metrics_are_skipped() -> None:
    d = paired_differences(summary_of({"p": {"auc": [0.7], "dice": [0.5]}, "r": {"auc": [0.6]}}), "p", "r")
    assert set(d) == {"auc"} and np.isnan(d["auc"]["low"])


def test_knn_metrics_join_the_summary_and_the_table(tmp_path) -> None:
    (tmp_path / "probe_report.json").write_text(json.dumps({"knn_test": {"macro_f1": 0.5, "auc": 0.75,
                                                                         "balanced_accuracy": 0.5, "n": 8}}))
    assert knn_test_metrics(tmp_path) == {"knn_macro_f1": 0.5, "knn_balanced_accuracy": 0.5, "knn_auc": 0.75}
    assert knn_test_metrics(tmp_path / "absent") == {}
    results = {m: [{"macro_f1": f, "auc": f, "knn_macro_f1": f, "knn_auc": f, "knn_balanced_accuracy": f}
                   for f in fs] for m, fs in {"pretrained": [0.8, 0.9], "random": [0.5, 0.7]}.items()}
    summary = summary_of({m: {"macro_f1": [r["macro_f1"] for r in rs], "auc": [r["auc"] for r in rs]}
                          for m, rs in results.items()})
    add_knn_summary(summary, results)
    assert summary["random"]["knn_auc"]["folds"] == [0.5, 0.7]
    table = comparison_table(summary)
    assert "| pretrained | 85.0 ± 7.1" in table and "| knn_auc | +25.0 [" in table and "+30.0, +20.0" in table
    assert comparison_table({"pretrained": summary["pretrained"]}) == ""
    # several starts from weights: one difference table each, the kNN table once
    summary["released"] = summary["pretrained"]
    table = comparison_table(summary, ["pretrained", "released", "absent"])
    assert table.count("kNN on the same frozen features") == 1 and table.count("| released | 85.0 ± 7.1") == 1
    assert "pretrained minus random" in table and "released minus random" in table and "absent" not in table


def test_subtle_protocol_has_four_classes_and_at_most_max_train(tmp_path) -> None:
    protocol = subtle_protocol(tmp_path, per_class=5, max_train=10)
    assert protocol.class_names == ["circumscribed", "heterogeneous", "microlobulated", "shadowing"]
    assert len(protocol.splits) == 5
    for split in protocol.splits:
        assert len(split["train"]) + len(split["validation"]) <= 10 and len(split["test"]) == 4


@pytest.mark.slow
def test_cross_validation_probe_path_prints_knn_and_paired_differences(tmp_path) -> None:
    import torch

    from monai_ext.apps.crossval import cross_validate
    from monai_ext.io.checkpoints import read_checkpoint
    from monai_ext.networks.mae import build_mae

    weights = build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32).state_dict()
    torch.save(weights, tmp_path / "mae.pth")
    protocol = subtle_protocol(tmp_path / "cache", per_class=6, max_train=16)
    overrides = {"arch": "mae_vit_tiny_patch16_dec128d2b", "image_size": 32, "batch_size": 8, "num_workers": 0,
                 "linear_probe": "true", "cache_dir": str(tmp_path / "cache")}
    # a second start: the same weights nested as in a Lightning training checkpoint
    torch.save({"state_dict": {f"model.{k}": v for k, v in weights.items()}, "epoch": 3}, tmp_path / "last.ckpt")
    methods = ["pretrained", "random", f"lightning={tmp_path / 'last.ckpt'}"]
    record = cross_validate(protocol, tmp_path / "cv", methods, str(tmp_path / "mae.pth"), folds=[0, 1],
                            overrides=overrides)
    assert {"knn_macro_f1", "knn_auc"} <= set(record["summary"]["random"])
    assert len(record["paired_differences"]["macro_f1"]["folds"]) == 2
    assert record["paired_differences"] == record["differences_from_random"]["pretrained"]
    assert "pretrained minus random, paired" in record["table"] and "| knn_auc |" in record["table"]
    assert "lightning minus random, paired" in record["table"] and "| lightning |" in record["table"]
    assert json.loads((tmp_path / "cv" / "cv_summary.json").read_text())["paired_differences"]
    # the named start read the nested file: its frozen encoder (saved with the probe's head) is those weights
    def encoder_of(name: str) -> torch.Tensor:
        return read_checkpoint(tmp_path / "cv" / name / "fold1" / "models" / "model.pt")["model"]["patch_embed.proj.weight"]

    assert torch.equal(encoder_of("lightning"), weights["patch_embed.proj.weight"])
    assert torch.equal(encoder_of("pretrained"), weights["patch_embed.proj.weight"])
    assert not torch.equal(encoder_of("random"), weights["patch_embed.proj.weight"])
    assert record["summary"]["lightning"]["auc"]["folds"] == pytest.approx(record["summary"]["pretrained"]["auc"]["folds"])
    assert sorted(p.name for p in (tmp_path / "cv").iterdir() if p.is_dir()) == ["lightning", "pretrained", "random",
                                                                                  "splits"]


def test_folds_without_a_metric_are_shown_and_counted_not_dropped() -> None:
    # a one-class test fold has no AUC: the mean covers the other folds, and the table says so
    from monai_ext.apps.crossval import markdown_table, summarise

    reports = {"pretrained": [{"auc": 0.8}, {"auc": None}, {"auc": 0.6}], "random": [{"auc": 0.5}, {"auc": 0.7},
                                                                                      {"auc": None}]}
    summary = summarise(reports, ["auc"])
    assert summary["pretrained"]["auc"]["mean"] == pytest.approx(0.7) and summary["pretrained"]["auc"]["n"] == 2
    table = markdown_table(summary, "toy: test metrics over 3 folds", ["auc"])
    assert "| pretrained | 70.0 ± 14.1 (2 of 3 folds) |" in table
    d = paired_differences(summary, "pretrained", "random")["auc"]
    assert d["n"] == 1 and d["mean"] == pytest.approx(0.3) and np.isnan(d["folds"][1:]).all()
    lines = comparison_table(summary, ["pretrained"])
    assert "| auc | +30.0 [n/a] (over 1 of 3 folds) | +30.0, n/a, n/a |" in lines


def test_a_spread_of_fewer_than_two_folds_is_undefined_not_zero() -> None:
    """``80.0 ± 0.0`` read as "no spread" for a one-fold run; an undefined mean printed as ``nan``."""
    from monai_ext.apps.comparison import fold_statistics, statistic_text

    one = fold_statistics([0.8])
    assert one["mean"] == 0.8 and np.isnan(one["std"]) and statistic_text(one) == "80.0 ± n/a"
    none = fold_statistics([None, None, None])
    assert statistic_text(none) == "n/a ± n/a (0 of 3 folds)"
    two = fold_statistics([0.5, None, 0.7])
    assert two["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and statistic_text(two, unit="repeats") == \
        "60.0 ± 14.1 (2 of 3 repeats)"


def test_an_undefined_knn_auc_in_one_fold_is_counted_not_dropped() -> None:
    from monai_ext.apps.comparison import add_knn_summary, knn_table

    runs = {s: [{"knn_macro_f1": 0.5, "knn_balanced_accuracy": 0.5, "knn_auc": auc} for auc in (0.6, None, 0.7)]
            for s in ("pretrained", "random")}
    summary = {s: {} for s in runs}
    add_knn_summary(summary, runs)
    assert summary["random"]["knn_auc"]["n"] == 2
    assert any("knn_auc" in line for line in knn_table(summary))
    assert "65.0 ± 7.1 (2 of 3 folds)" in "\n".join(knn_table(summary))


def test_paired_differences_refuse_fold_lists_of_different_lengths() -> None:
    summary = {"a": {"macro_f1": {"folds": [0.5] * 5}}, "b": {"macro_f1": {"folds": [0.4]}}}
    with pytest.raises(ValueError, match="'a' has 5 fold value.* 'b' 1"):
        paired_differences(summary, "a", "b")


def test_class_averages_of_a_test_fold_without_a_class_are_counted_as_undefined() -> None:
    """A model that never finds the malignant class scores macro-F1 and balanced accuracy 1.0 on a test fold
    without malignant images (those leave the absent class out): averaged in, its cross-validation read 64 %. Such
    a fold counts as undefined for the class averages, as a one-class fold for AUC, and the tables say so."""
    from monai_ext.apps.crossval import markdown_table, summarise

    def report(score: float, malignant: int) -> dict:
        return {"macro_f1": score, "balanced_accuracy": score, "accuracy": 0.9, "auc": 0.5,
                "per_class": {"benign": {"support": 8}, "malignant": {"support": malignant}},
                "knn_macro_f1": score, "knn_balanced_accuracy": score, "knn_auc": 0.5}

    reports = {"pretrained": [report(0.45, 2), report(1.0, 0), report(0.45, 2)],
               "random": [report(0.40, 2), report(1.0, 0), report(0.30, 2)]}
    summary = summarise(reports)
    add_knn_summary(summary, reports)
    for metric in ("macro_f1", "balanced_accuracy", "knn_macro_f1", "knn_balanced_accuracy"):
        assert summary["pretrained"][metric]["mean"] == pytest.approx(0.45) and summary["pretrained"][metric]["n"] == 2
        assert np.isnan(summary["pretrained"][metric]["folds"][1])
    assert summary["pretrained"]["accuracy"]["n"] == 3  # defined whatever the classes held
    for metric in ("auc", "knn_auc"):  # class averages too (over the classes present): the same folds as macro-F1
        assert summary["pretrained"][metric]["n"] == 2 and np.isnan(summary["pretrained"][metric]["folds"][1])
    table = markdown_table(summary, "toy: test metrics over 3 folds", ["macro_f1", "accuracy"])
    assert "| pretrained | 45.0 ± 0.0 (2 of 3 folds) | 90.0 ± 0.0 |" in table
    assert "| macro_f1 | +10.0 [" in comparison_table(summary) and "(over 2 of 3 folds) | +5.0, n/a, +15.0 |" \
        in comparison_table(summary)


def scored_fold(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """A test report as the classification bundle writes it: scikit-learn's metrics, AUC as the mean one-vs-rest AUC
    over the classes present (``monai_ext.engines.metrics``), and the per-class supports."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    pred = probs.argmax(1)
    with warnings.catch_warnings():  # a class the fold lacks but the model predicts: scored 0 as in the bundle
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        f1, balanced = f1_score(labels, pred, average="macro"), balanced_accuracy_score(labels, pred)
    auc = float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in np.unique(labels)]))
    scores = {"macro_f1": f1, "accuracy": accuracy_score(labels, pred), "balanced_accuracy": balanced, "auc": auc}
    return {**scores, **{f"knn_{k}": v for k, v in scores.items() if k != "accuracy"},
            "per_class": {f"c{c}": {"support": int((labels == c).sum())} for c in range(num_classes)}}


@pytest.mark.parametrize("num_classes, short_fold", [(3, 1), (4, 0), (5, 2)])
def test_auc_of_a_test_fold_without_a_class_is_undefined_as_its_macro_f1(num_classes: int, short_fold: int) -> None:
    """A multi-class test fold without a class scored AUC over the classes it held (``{'macro_f1': None, 'auc':
    0.9}``): the AUC column averaged (K - 1)-class AUCs with K-class ones, over more folds than macro-F1's."""
    from sklearn.metrics import roc_auc_score

    from monai_ext.apps.crossval import markdown_table, summarise

    rng = np.random.default_rng(num_classes)
    folds = [np.repeat(np.arange(num_classes), 4) for _ in range(3)]
    folds[short_fold] = folds[short_fold][folds[short_fold] != num_classes - 1]  # the last class is absent there
    results, probs = {}, {}
    for start in ("pretrained", "random"):
        probs[start] = [rng.dirichlet(np.ones(num_classes), size=len(labels)) for labels in folds]
        results[start] = [scored_fold(labels, p, num_classes) for labels, p in zip(folds, probs[start])]
    assert results["pretrained"][short_fold]["auc"] is not None  # its own report keeps the value
    summary = summarise(results)
    add_knn_summary(summary, results)
    full = [k for k in range(3) if k != short_fold]
    for start in results:
        # independent reference: scikit-learn's multi-class one-vs-rest AUC of the complete folds only
        expected = np.mean([roc_auc_score(folds[k], probs[start][k], multi_class="ovr") for k in full])
        for metric in ("auc", "knn_auc"):
            column = summary[start][metric]
            assert column["n"] == summary[start]["macro_f1"]["n"] == 2 and np.isnan(column["folds"][short_fold])
            assert column["mean"] == pytest.approx(expected)
    for row in markdown_table(summary, "toy", ["macro_f1", "auc", "accuracy"]).splitlines()[-2:]:
        assert row.count("(2 of 3 folds)") == 2  # macro-F1 and AUC, not accuracy
    d = paired_differences(summary, "pretrained", "random")
    assert d["auc"]["n"] == d["macro_f1"]["n"] == 2 and d["accuracy"]["n"] == 3
    a, b = (np.array(summary[s]["auc"]["folds"])[full] for s in ("pretrained", "random"))
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (d["auc"]["low"], d["auc"]["high"]) == pytest.approx((ci.low, ci.high))
    assert "| auc | " in comparison_table(summary) and "(over 2 of 3 folds) | " in comparison_table(summary)


def segmentation_fold(dice: float, hd95: float | None, undefined: int) -> dict:
    """A segmentation test report's summary keys (``monai_ext.handlers.segmentation``): 15 images, one lesion class."""
    return {"mean_dice": dice, "mean_iou": dice / (2 - dice), "mean_hd95": hd95, "hd95_undefined": undefined,
            "n": 15, "class_names": ["background", "lesion"]}


@pytest.mark.parametrize("undefined_fold", [None, 0, 3])
def test_segmentation_summaries_get_paired_differences_of_dice_iou_and_hd95(undefined_fold: int | None) -> None:
    """A segmentation cross-validation had no pretrained-minus-random comparison: ``paired_differences`` returned
    ``{}``, the table none and ``cv_summary.json`` ``differences_from_random: {"pretrained": {}}``."""
    from monai_ext.apps.crossval import SEGMENTATION_METRICS, summarise

    rng = np.random.default_rng(0 if undefined_fold is None else undefined_fold + 1)
    dice = {s: rng.uniform(0.3, 0.9, 5) for s in ("pretrained", "random")}
    hd95 = {s: rng.uniform(5, 30, 5).tolist() for s in dice}
    undefined = {s: rng.integers(0, 4, 5).tolist() for s in dice}
    if undefined_fold is not None:  # a fold where the pretrained start found no lesion: no distance at all
        hd95["pretrained"][undefined_fold], undefined["pretrained"][undefined_fold] = None, 15
    results = {s: [segmentation_fold(*values) for values in zip(dice[s], hd95[s], undefined[s])] for s in dice}
    summary = summarise(results, SEGMENTATION_METRICS)
    diffs = paired_differences(summary, "pretrained", "random")
    assert list(diffs) == ["mean_dice", "mean_iou", "mean_hd95"]
    table = comparison_table(summary)
    assert "mean_hd95 in pixels, lower is better" in table
    for metric in diffs:
        a, b = (np.array([np.nan if r[metric] is None else r[metric] for r in results[s]]) for s in results)
        kept = np.isfinite(a) & np.isfinite(b)  # an undefined fold of either start is no pair
        ci = stats.ttest_rel(a[kept], b[kept]).confidence_interval(0.95)
        d = diffs[metric]
        assert d["n"] == kept.sum() and d["mean"] == pytest.approx(np.mean(a[kept] - b[kept]))
        assert (d["low"], d["high"]) == pytest.approx((ci.low, ci.high))
        scale = 1 if metric == "mean_hd95" else 100  # HD95 in pixels, the others in points
        row = f"| {metric} | {scale * d['mean']:+.1f} [{scale * ci.low:+.1f}, {scale * ci.high:+.1f}]"
        assert row in table, table
    hd95_row = next(line for line in table.splitlines() if line.startswith("| mean_hd95 |"))
    assert ("(over 4 of 5 folds)" in hd95_row) == (undefined_fold is not None)
    assert f"(undefined pairs: pretrained {sum(undefined['pretrained'])}/75, random {sum(undefined['random'])}/75)" \
        in hd95_row
    per_fold = ["n/a" if k == undefined_fold else f"{hd95['pretrained'][k] - hd95['random'][k]:+.1f}" for k in range(5)]
    assert hd95_row.endswith(f"| {', '.join(per_fold)} |")  # in pixels, not points


def test_segmentation_cross_validation_writes_the_paired_differences(tmp_path, monkeypatch) -> None:
    """``cv_summary.json`` of a segmentation run held ``differences_from_random: {"pretrained": {}}``."""
    from monai_ext.apps import crossval
    from monai_ext.data.downstream import Protocol

    reports = iter(segmentation_fold(dice, 10.0 + k, 0) for k, dice in enumerate([0.7, 0.5, 0.8, 0.55]))
    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args: None)
    monkeypatch.setattr(crossval, "shared_architecture", lambda checkpoint, overrides: overrides)
    monkeypatch.setattr(crossval, "run_fold", lambda *args, **kwargs: next(reports))
    monkeypatch.setattr(crossval, "write_split", lambda *args: tmp_path / "split.json")
    monkeypatch.setattr(crossval, "check_split", lambda *args: None)
    monkeypatch.setattr(crossval, "locate_bundle_root", lambda name: tmp_path)
    protocol = Protocol("toy", ["background", "lesion"], [{"train": [], "validation": [], "test": []}] * 2)
    crossval.cross_validate(protocol, tmp_path / "cv", ["pretrained", "random"], "model.pt", task="segment")
    record = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    d = record["differences_from_random"]["pretrained"]
    assert set(d) == {"mean_dice", "mean_iou", "mean_hd95"} and d["mean_dice"]["folds"] == pytest.approx([0.2, 0.25])
    assert "pretrained minus random, paired" in record["table"]
