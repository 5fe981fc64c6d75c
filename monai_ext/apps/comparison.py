"""Comparing two starting points over the same folds: kNN test metrics of linear-probe runs, paired differences with
95 % intervals (classification and segmentation metrics), and the subtle synthetic benchmark as a cross-validation
protocol.

A gap between two means over five folds says little when the folds disagree; the paired per-fold difference shows
how far they do. Its interval is the plain paired t over the folds, unadjusted: it treats the fold differences as
independent, while the folds' training sets overlap (in plain 5-fold cross-validation any two share three quarters
of their images), so it is too narrow. Nadeau and Bengio (2003) scale the variance of the mean by
``1/n + n_test/n_train`` instead of ``1/n``: for five plain folds an interval 1.5 times wider. An interval that
excludes zero is a hint, not a test; the tables say so (:data:`INTERVAL_CAPTION`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_ext.data.downstream import Protocol, check_generated_size, folder_protocol
from monai_ext.data.lesion_benchmark import subtle_lesion_dataset

#: Test metrics of the kNN classifier that a linear-probe run tunes beside the probe (``probe_report.json``).
KNN_METRICS = ("knn_macro_f1", "knn_balanced_accuracy", "knn_auc")
#: Test metrics of a segmentation run (the segmentation bundle's ``test_report.json``) that the comparison pairs.
SEGMENTATION_COMPARED = ("mean_dice", "mean_iou", "mean_hd95")
#: The metrics the paired comparison shows, in this order, when the runs have them.
COMPARED_METRICS = ("macro_f1", "auc", "balanced_accuracy", "accuracy", *KNN_METRICS, *SEGMENTATION_COMPARED)
#: Compared metrics in their own unit (HD95: pixels of each image as read), shown as they are, not as points; lower
#: is better.
DISTANCE_METRICS = ("mean_hd95",)
#: Averages over the classes of a test part: a class it lacks is left out of them, not scored (:func:`fold_value`).
#: AUC is one too: with several classes it is the mean of the one-vs-rest AUCs of the classes present
#: (``monai_ext.engines.metrics``).
CLASS_AVERAGED_METRICS = ("macro_f1", "balanced_accuracy", "auc", "knn_macro_f1", "knn_balanced_accuracy", "knn_auc")
#: What a table's interval is, ``{unit}`` the folds or repeats paired: it must not read as a test of the gap.
INTERVAL_CAPTION = "95 % unadjusted paired-t interval; the {unit} share training images, so it is too narrow"


def interval_caption(unit: str = "folds") -> str:
    """The caption of a paired-difference table's interval (:data:`INTERVAL_CAPTION`) for ``unit`` (folds, repeats)."""
    return INTERVAL_CAPTION.format(unit=unit)


def classes_missing(report: Mapping[str, Any]) -> list[str]:
    """The classes with no image in the test part that ``report`` scored (its ``per_class`` supports); empty for a
    report without them (segmentation, or a hand-made one)."""
    return [name for name, stats in (report.get("per_class") or {}).items() if stats.get("support") == 0]


def fold_value(report: Mapping[str, Any], metric: str) -> float | None:
    """``report[metric]`` as a fold's value in a summary over folds: None (undefined, as a one-class fold's AUC)
    for a class average (:data:`CLASS_AVERAGED_METRICS`) of a test part that lacks a class.

    Such a fold scores macro-F1, balanced accuracy and AUC over the classes it holds, so a model that never predicts
    the absent class scores 1.0 there (macro-F1, balanced accuracy); averaged with complete folds it would lift the
    mean of a model that never finds that class. AUC goes with them, so that every class-averaged column covers the
    same folds: a mean of (K - 1)-class AUCs with K-class ones, over more folds than the macro-F1 beside it, would
    compare neither with the other columns nor between starts. Its own report keeps the value.
    """
    if metric in CLASS_AVERAGED_METRICS and classes_missing(report):
        return None
    return report[metric]


def knn_test_metrics(eval_dir: str | os.PathLike) -> dict[str, float]:
    """``knn_<metric>`` of the kNN test report in ``eval_dir/probe_report.json``; empty when there is none."""
    path = Path(eval_dir) / "probe_report.json"
    if not path.is_file():
        return {}
    knn = json.loads(path.read_text()).get("knn_test") or {}
    return {f"knn_{k}": knn[k] for k in ("macro_f1", "balanced_accuracy", "auc") if k in knn}


def fold_statistics(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (``ddof=1``) over the folds that define a metric.

    Returns:
        ``{"mean", "std", "folds", "n"}``: ``folds`` holds every fold, NaN where it leaves the metric undefined (a
        one-class test fold has no AUC); ``n`` counts the defined ones. The mean is NaN without any and the
        standard deviation without two: not 0.0, which would read as "no spread".
    """
    folds = np.array([np.nan if v is None else v for v in values], dtype=float)
    defined = folds[np.isfinite(folds)]
    return {"mean": float(defined.mean()) if len(defined) else float("nan"),
            "std": float(defined.std(ddof=1)) if len(defined) > 1 else float("nan"),
            "folds": folds.tolist(), "n": len(defined)}


def statistic_text(stats: Mapping[str, Any], scale: float = 100.0, unit: str = "folds") -> str:
    """``80.0 ± 3.5``, with ``n/a`` for a mean or spread that the folds leave undefined, and `` (2 of 3 folds)``
    where some folds (or repeats: ``unit``) leave the metric undefined (the title's count would claim folds the
    mean does not cover)."""
    mean, std = stats["mean"], stats["std"]
    text = (f"{scale * mean:.1f}" if np.isfinite(mean) else "n/a") + " ± " + (
        f"{scale * std:.1f}" if np.isfinite(std) else "n/a")
    total, defined = len(stats["folds"]), stats.get("n", len(stats["folds"]))
    return text + (f" ({defined} of {total} {unit})" if defined < total else "")


def add_knn_summary(summary: dict[str, dict[str, Any]], results: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Add the statistics of the kNN metrics (:func:`fold_statistics`) to ``summary`` (in place) for methods whose
    runs report them (linear-probe runs); a fold that leaves one undefined (a one-class test fold's AUC, a class
    average of a test fold without a class: :func:`fold_value`) counts as undefined there, as in the main metrics,
    instead of removing the metric."""
    for method, reports in results.items():
        for metric in KNN_METRICS:
            if reports and all(metric in r for r in reports):
                summary[method][metric] = fold_statistics([fold_value(r, metric) for r in reports])


def paired_differences(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], first: str, second: str,
                       confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per metric, ``first - second`` fold by fold (the same folds), its mean and a paired-t interval.

    The interval is scipy's ``ttest_rel`` one: it takes the fold differences as independent, which folds with
    overlapping training sets are not, so it is too narrow (unadjusted; see the module's note). The per-fold sizes
    a corrected variance needs are not in ``summary``.

    Args:
        summary: ``{method: {metric: {"folds": [...], ...}}}`` as the cross-validation writes it.
        first, second: the two methods.
        confidence: of the interval.

    Returns:
        ``{metric: {"folds": [d_k], "mean": d, "low": l, "high": h, "n": n}}``: ``folds`` holds every fold, NaN where
        either method's metric is undefined (a test fold with one class has no AUC, a segmentation fold in which a
        start predicted no lesion no HD95); mean and interval are over the ``n`` defined ones, the interval NaN when
        fewer than two.
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    out = {}
    for metric in COMPARED_METRICS:
        if metric not in summary[first] or metric not in summary[second]:
            continue
        a, b = (np.array(summary[method][metric]["folds"], float) for method in (first, second))
        if a.shape != b.shape:  # numpy would pair 5 folds with one, or fail on broadcasting
            raise ValueError(f"{metric}: {first!r} has {a.size} fold value(s) and {second!r} {b.size}; a paired "
                             "comparison needs the same folds of both")
        every = a - b
        diffs = every[np.isfinite(every)]
        mean = float(diffs.mean()) if len(diffs) else float("nan")
        half = float("nan")
        if len(diffs) > 1:
            half = float(stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
        out[metric] = {"folds": every.tolist(), "mean": mean, "low": mean - half, "high": mean + half,
                       "n": len(diffs)}
    return out


def knn_table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Markdown lines: the kNN means of every start, when every start has them (a linear-probe run)."""
    knn = [m for m in KNN_METRICS if all(m in summary[s] for s in summary)]
    if not knn:
        return []
    lines = ["", "kNN on the same frozen features (k tuned on validation; mean ± sample std, %):", "",
             "| start | " + " | ".join(knn) + " |", "|---|" + "---|" * len(knn)]
    for method, values in summary.items():
        lines.append(f"| {method} | " + " | ".join(statistic_text(values[m]) for m in knn) + " |")
    return lines


def difference_table(diffs: Mapping[str, Mapping[str, Any]], first: str, second: str,
                     notes: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines: ``first - second`` per metric, paired over folds, with its interval (unadjusted for the
    folds' overlap, as the title says: :func:`interval_caption`) and the fold values.

    Args:
        diffs: from :func:`paired_differences`.
        first, second: the two methods.
        notes: text to add after a metric's difference (:func:`undefined_pairs_note`).

    Fractions are shown as points, :data:`DISTANCE_METRICS` as they are (pixels), which the title says.
    """
    distances = [m for m in diffs if m in DISTANCE_METRICS]
    # HD95 in points would read 100 times too large, and its sign means the opposite of the other rows'
    unit = "points" + (f"; {', '.join(distances)} in pixels, lower is better" if distances else "")
    lines = ["", f"{first} minus {second}, paired over the same folds ({unit}: mean [{interval_caption()}]):", "",
             "| metric | difference [95 % CI, unadjusted] | per fold |", "|---|---|---|"]
    for metric, d in diffs.items():
        scale = 1.0 if metric in DISTANCE_METRICS else 100.0
        folds = ", ".join(f"{scale * v:+.1f}" if np.isfinite(v) else "n/a" for v in d["folds"])
        note = (notes or {}).get(metric, "")
        lines.append(f"| {metric} | {difference_text(d, scale)}{pairs_note(d)}{note} | {folds} |")
    return lines


def undefined_pairs_note(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str,
                         methods: Sequence[str]) -> str:
    """`` (undefined pairs: pretrained 3/75, random 0/75)``: per method, the (image, class) pairs over all folds
    without a distance (``hd95_undefined`` and ``pairs`` of a segmentation summary's ``mean_hd95``), where any
    method has some; nothing where the summary does not count them.

    An HD95 mean leaves out the pairs without a distance, so a start that misses more lesions is averaged over fewer,
    easier images: its paired difference is then not like for like, and the row says so.
    """
    counts: dict[str, tuple[int, int]] = {}
    for method in methods:
        stats = summary[method].get(metric, {})
        undefined, pairs = stats.get("hd95_undefined"), stats.get("pairs")
        if not undefined or not pairs or None in undefined or None in pairs:
            return ""
        counts[method] = (sum(undefined), sum(pairs))
    if not any(undefined for undefined, _ in counts.values()):
        return ""
    return " (undefined pairs: " + ", ".join(f"{m} {u}/{p}" for m, (u, p) in counts.items()) + ")"


def pairs_note(d: Mapping[str, Any], unit: str = "folds") -> str:
    """`` (over 2 of 3 folds)`` where some pairs leave a difference undefined, else nothing."""
    return f" (over {d['n']} of {len(d['folds'])} {unit})" if d["n"] < len(d["folds"]) else ""


def difference_text(d: Mapping[str, float], scale: float = 100.0) -> str:
    """``+1.4 [+0.2, +2.6]``: a paired difference (fractions) in points with its interval, ``[n/a]`` for the
    interval where one pair gives none (one fold or repeat), ``n/a`` for a mean without any pair; ``scale=1`` shows
    a difference in its own unit (HD95 in pixels).

    Where every pair differs by the same amount (two or more pairs) the t interval has no width;
    ``[n/a: every pair differs by the same amount]`` (``every pair equal`` where that amount is 0) says so instead
    of an interval that reads as certainty (a few small test folds often give equal accuracy differences).
    """
    mean = f"{scale * d['mean']:+.1f}" if np.isfinite(d["mean"]) else "n/a"
    interval = f"[{scale * d['low']:+.1f}, {scale * d['high']:+.1f}]" if np.isfinite(d["low"]) else "[n/a]"
    # the interval is finite only with two pairs or more (paired_differences); its width is 0 when their spread is
    if np.isfinite(d["low"]) and d["high"] - d["low"] < 1e-12:
        same = "every pair equal" if abs(d["mean"]) < 1e-12 else "every pair differs by the same amount"
        interval = f"[n/a: {same}]"
    return f"{mean} {interval}"


def comparison_table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     firsts: Sequence[str] = ("pretrained",), second: str = "random") -> str:
    """Markdown: the kNN means (when present), then each of ``firsts`` minus ``second`` paired over folds with 95 %
    unadjusted paired-t intervals (too narrow: :func:`interval_caption`): the classification metrics, or Dice, IoU
    and HD95 of a segmentation summary (HD95 in pixels, with each start's undefined pairs where it has some:
    :func:`undefined_pairs_note`).

    Empty when ``summary`` lacks ``second`` or every one of ``firsts``, or has none of the compared metrics.
    """
    firsts = [firsts] if isinstance(firsts, str) else firsts  # one start given as a plain name
    firsts = [f for f in firsts if f in summary and f != second]
    if second not in summary or not firsts:
        return ""
    tables = []
    for first in firsts:
        diffs = paired_differences(summary, first, second)
        if diffs:  # a hand-made summary may hold none of the compared metrics
            notes = {m: undefined_pairs_note(summary, m, (first, second)) for m in diffs if m in DISTANCE_METRICS}
            tables += difference_table(diffs, first, second, notes)
    return "\n".join(knn_table(summary) + tables) + "\n" if tables else ""


def subtle_protocol(cache_dir: str | os.PathLike, per_class: int = 60, max_train: int | None = 100, seed: int = 0,
                    strength: float = 1.0) -> Protocol:
    """The subtle lesion benchmark (:mod:`monai_ext.data.lesion_benchmark`) as a 5-fold protocol with at most
    ``max_train`` labelled training images per fold (a fifth of them for validation; None: all of the fold's)."""
    check_generated_size(per_class)
    folder = subtle_lesion_dataset(cache_dir, per_class=per_class, seed=seed, strength=strength)
    protocol = folder_protocol(folder, folds=5, val_fraction=0.2, seed=seed, max_train=max_train)
    protocol.name = "subtle_lesions"
    return protocol
