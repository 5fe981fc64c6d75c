"""Confusion-matrix and ROC plots drawn by scikit-learn's ``ConfusionMatrixDisplay`` and ``RocCurveDisplay``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_ext.io.figures import save_figure


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (servers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str) -> None:
    """Write the confusion matrix as a PNG: counts in the cells, rows the true class, columns the predicted one.

    Args:
        matrix: (K, K) counts, rows = truth (``classification_report``'s ``confusion_matrix``).
        class_names: K names.
        path: the PNG file (written atomically).
        title: figure title.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(matrix)
    if cm.ndim != 2 or cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"matrix must be ({len(class_names)}, {len(class_names)}) for {list(class_names)!r}, "
                         f"got shape {cm.shape!r}")
    plt = _pyplot()
    side = 0.8 * len(class_names)
    # the tick labels take room by their length (a 45-degree x label reaches down and left, a y label left): a size
    # by class count alone overlapped long names and cut off the "true" label
    names = 0.075 * min(max((len(str(n)) for n in class_names), default=0), 60)
    fig, ax = plt.subplots(figsize=(2.6 + side + names, 2.2 + side + 0.7 * names), dpi=120)
    # counts as whole numbers; a normalised (or JSON-read float) matrix with its fractions ("d" refused floats)
    whole = np.issubdtype(cm.dtype, np.integer) or bool(np.all(np.mod(cm, 1) == 0))
    display = ConfusionMatrixDisplay(confusion_matrix=cm.astype(np.int64) if whole else cm,
                                     display_labels=list(class_names))
    display.plot(ax=ax, cmap="Blues", xticks_rotation=45, colorbar=False, values_format="d" if whole else ".2f")
    # each rotated name ends under its own column (centred, a long name ran under its neighbours')
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_roc(roc: Mapping[str, Mapping[str, Sequence[float]]], auc: float | None, path: Path, title: str) -> None:
    """Write one-vs-rest ROC curves as a PNG, each labelled with its own AUC, plus the chance line.

    Args:
        roc: ``{class name: {"fpr": [...], "tpr": [...]}}`` (``classification_report``'s ``roc``).
        auc: the macro AUC, shown in the title; None or NaN (a report's JSON ``null``) as "undefined".
        path: the PNG file (written atomically).
        title: figure title.
    """
    from sklearn.metrics import RocCurveDisplay
    from sklearn.metrics import auc as area_under

    plt = _pyplot()
    # taller by a legend line per curve, which goes below the axes (see below); constrained layout makes room for it
    fig, ax = plt.subplots(figsize=(4.5, 4.2 + 0.14 * (len(roc) + 1)), dpi=120, layout="constrained")
    for index, (name, curve) in enumerate(roc.items()):
        fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve["tpr"])
        display = RocCurveDisplay(fpr=fpr, tpr=tpr, roc_auc=area_under(fpr, tpr), name=name)
        display.plot(ax=ax, plot_chance_level=index == len(roc) - 1)  # one chance line, drawn with the last curve
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    defined = auc is not None and np.isfinite(auc)
    ax.set_title(f"{title} (AUC {auc:.3f})" if defined else f"{title} (AUC undefined)")
    if roc:  # no curve: no legend (matplotlib warns of an empty one)
        # below the axes and their labels, not in them: inside, long names covered the curves and the y tick labels
        if ax.get_legend() is not None:  # the one RocCurveDisplay put inside the axes
            ax.get_legend().remove()
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center")
    save_figure(fig, path)
