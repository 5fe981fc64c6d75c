"""Confusion-matrix and ROC plots drawn by scikit-learn's ``ConfusionMatrixDisplay`` and ``RocCurveDisplay``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_ext.io.figures import save_figure


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (servers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def literal_text(text: object) -> str:
    """``text`` (a class name, a data set's name) as matplotlib must draw it: as written, each ``$`` escaped.

    matplotlib draws the text between two unescaped ``$`` as mathematics: a class named "$5-$10 lesion" was drawn
    as the formula "5 - 10 lesion", and one named "$\\frac{a$" failed the figure (and the training that drew it) with a
    mathtext ValueError when the PNG was saved.

    Args:
        text: any text; non-strings are drawn as ``str`` draws them.
    """
    return str(text).replace("$", r"\$")


#: Line styles that, with the 20 colours of matplotlib's ``tab20``, tell up to 80 curves apart.
LINE_STYLES = ("-", "--", ":", "-.")


def curve_styles(count: int) -> list[tuple[tuple[float, ...], str]]:
    """A (colour, line style) pair per curve, all different for up to ``20 * len(LINE_STYLES)`` curves.

    Up to 10 curves: matplotlib's default colours (``tab10``), solid; up to 20: ``tab20``, solid; beyond: ``tab20``
    again in each further line style. The default colour cycle alone repeats after 10, so that from 11 classes on
    two ROC curves looked the same and the legend could not tell them apart.

    Args:
        count: the number of curves.
    """
    from matplotlib import colormaps

    colours = colormaps["tab10" if count <= 10 else "tab20"].colors
    return [(tuple(colours[i % len(colours)]), LINE_STYLES[(i // len(colours)) % len(LINE_STYLES)])
            for i in range(count)]


def _readable_despite_nan(display: Any, cm: np.ndarray) -> None:
    """Cell texts readable where the matrix holds NaN (a normalised row of a class with no sample): "–" in dark
    text on the blank cell, and the others dark or light by their cell's shade among the finite values.

    scikit-learn compares each cell with the mid-point of min and max, NaN with a NaN: every text came out in the
    lightest colour, so the zeros (near white cells) could not be seen.

    Args:
        display: the plotted ``ConfusionMatrixDisplay`` (its ``text_`` and ``im_``).
        cm: the (K, K) matrix it shows.
    """
    finite = np.isfinite(cm)
    if finite.all():
        return  # scikit-learn's own colours are right
    cmap = display.im_.cmap
    light, dark = cmap(0.0), cmap(1.0)
    values = cm[finite]
    middle = (values.max(initial=0.0) + values.min(initial=0.0)) / 2.0
    for (i, j), text in np.ndenumerate(display.text_):
        if not finite[i, j]:
            text.set_text("\N{EN DASH}")
            text.set_color(dark)  # NaN cells are drawn blank (the axes' white)
        else:
            text.set_color(dark if cm[i, j] < middle else light)


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
                                     display_labels=[literal_text(name) for name in class_names])
    display.plot(ax=ax, cmap="Blues", xticks_rotation=45, colorbar=False, values_format="d" if whole else ".2f")
    _readable_despite_nan(display, cm)
    # each rotated name ends under its own column (centred, a long name ran under its neighbours')
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(literal_text(title))
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
    for index, ((name, curve), (colour, style)) in enumerate(zip(roc.items(), curve_styles(len(roc)))):
        fpr, tpr = np.asarray(curve["fpr"]), np.asarray(curve["tpr"])
        display = RocCurveDisplay(fpr=fpr, tpr=tpr, roc_auc=area_under(fpr, tpr), name=literal_text(name))
        display.plot(ax=ax, plot_chance_level=index == len(roc) - 1)  # one chance line, drawn with the last curve
        # styled after plotting, not through plot(curve_kwargs=...), which scikit-learn < 1.7 lacks (>= 1.4 is
        # required); the legend is built below, from the styled lines
        display.line_.set_color(colour)
        display.line_.set_linestyle(style)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    defined = auc is not None and np.isfinite(auc)
    ax.set_title(f"{literal_text(title)} (AUC {auc:.3f})" if defined else f"{literal_text(title)} (AUC undefined)")
    if roc:  # no curve: no legend (matplotlib warns of an empty one)
        # below the axes and their labels, not in them: inside, long names covered the curves and the y tick labels
        if ax.get_legend() is not None:  # the one RocCurveDisplay put inside the axes
            ax.get_legend().remove()
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center")
    save_figure(fig, path)
