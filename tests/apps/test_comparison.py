"""Paired comparison of two starts over folds (against scipy's paired t-test), kNN metrics of probe runs, and the
cross-validation runner's linear-probe path on the subtle benchmark."""

from __future__ import annotations

import json

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
    for metric in ("accuracy", "auc", "knn_auc"):  # defined whatever the classes held
        assert summary["pretrained"][metric]["n"] == 3
    table = markdown_table(summary, "toy: test metrics over 3 folds", ["macro_f1", "accuracy"])
    assert "| pretrained | 45.0 ± 0.0 (2 of 3 folds) | 90.0 ± 0.0 |" in table
    assert "| macro_f1 | +10.0 [" in comparison_table(summary) and "(over 2 of 3 folds) | +5.0, n/a, +15.0 |" \
        in comparison_table(summary)
