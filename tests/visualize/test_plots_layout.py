"""Confusion-matrix and ROC layout: long class names and many classes fit the figure without overlapping, and the
ROC legend lies outside the axes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.visualize import plots


@pytest.fixture
def drawn(keep_figures) -> list:
    return keep_figures(plots)


def _boxes(texts) -> list:
    return [t.get_window_extent() for t in texts if t.get_text()]


def _disjoint(boxes) -> bool:
    return not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _inside(box, figure) -> bool:
    return box.x0 >= figure.x0 and box.y0 >= figure.y0 and box.x1 <= figure.x1 and box.y1 <= figure.y1


@pytest.mark.parametrize("names", [
    ["zz malignant-like lesion (BI-RADS 5, biopsy-proven)", "normal", "aa benign-like lesion (BI-RADS 3)"],
    [f"class_{i}_with_a_rather_long_name (BI-RADS {i})" for i in range(12)],
])
def test_long_class_names_fit_the_confusion_matrix_without_overlapping(drawn, tmp_path, names) -> None:
    k = len(names)
    plots.plot_confusion_matrix(np.arange(k * k).reshape(k, k).tolist(), names, tmp_path / "cm.png", "title")
    fig = drawn[0]
    ax, box = fig.axes[0], fig.bbox
    xticks, yticks = _boxes(ax.get_xticklabels()), _boxes(ax.get_yticklabels())
    labels = [ax.xaxis.label, ax.yaxis.label, ax.title]
    for text_box in xticks + yticks + _boxes(labels):
        assert _inside(text_box, box)  # "true" and the names were cut at the left edge
    assert _disjoint(yticks) and _disjoint(_boxes([ax.yaxis.label]) + yticks)
    assert not any(ax.xaxis.label.get_window_extent().overlaps(b) for b in xticks)
    # each rotated name ends under its own column (centred there, a long one ran under its neighbours'), and
    # the 45-degree strips lie apart: a line of text is thinner than the columns' spacing across the strips
    columns = [ax.transData.transform((i, 0))[0] for i in range(k)]
    font = ax.get_xticklabels()[0].get_fontsize() * fig.dpi / 72
    for label, column, box in zip(ax.get_xticklabels(), columns, xticks):
        assert abs(box.x1 - column) < font
    assert font < np.diff(columns).min() * np.sqrt(0.5)
    assert cv2.imread(str(tmp_path / "cm.png")) is not None


def test_the_roc_legend_covers_neither_the_curves_nor_the_axis_labels(drawn, tmp_path) -> None:
    names = ["benign (BI-RADS 3)", "malignant (BI-RADS 5, biopsy-proven)", "normal", "cyst", "fibroadenoma",
             "lipoma", "abscess", "other"]
    roc = {n: {"fpr": [0.0, 0.1 * i / 8, 1.0], "tpr": [0.0, 0.9, 1.0]} for i, n in enumerate(names)}
    plots.plot_roc(roc, 0.9, tmp_path / "roc.png", "ROC")
    fig = drawn[0]
    ax = fig.axes[0]
    legends = [*fig.legends, *([ax.get_legend()] if ax.get_legend() else [])]
    assert len(legends) == 1
    legend = legends[0].get_window_extent()
    assert _inside(legend, fig.bbox)
    for other in [ax.get_window_extent(), *_boxes(ax.get_yticklabels()), *_boxes(ax.get_xticklabels()),
                  *_boxes([ax.xaxis.label, ax.yaxis.label, ax.title])]:
        assert not legend.overlaps(other)
    assert len(legends[0].get_texts()) == len(names) + 1  # each curve and the chance line


def test_save_figure_keeps_what_is_drawn_past_the_figure_edge(tmp_path) -> None:
    """bbox_inches="tight": a label reaching past the edge is saved whole, not cut off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_ext.io.figures import save_figure

    fig = plt.figure(figsize=(2, 2), dpi=100)
    fig.text(0.5, 0.5, "a label much wider than the two-inch figure it is drawn on")
    save_figure(fig, tmp_path / "wide.png")
    png = cv2.imread(str(tmp_path / "wide.png"))
    assert png.shape[1] > 250
