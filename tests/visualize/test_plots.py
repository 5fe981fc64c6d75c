"""Confusion-matrix and ROC figures: what is drawn equals the report's numbers, and the PNG is written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.engines.metrics import classification_report
from monai_ext.visualize import plots


@pytest.fixture
def drawn(keep_figures) -> list:
    """The figures the plot functions save, kept open for inspection (they are still written)."""
    return keep_figures(plots)


def report_of(seed: int = 0, k: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, 40)])
    logits = rng.normal(size=(len(labels), k)) + np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return classification_report(probs, labels, [f"class {c}" for c in range(k)])


def test_confusion_matrix_cells_and_labels(drawn, tmp_path) -> None:
    report = report_of()
    names = list(report["per_class"])
    plots.plot_confusion_matrix(report["confusion_matrix"], names, tmp_path / "cm.png", "test")
    ax = drawn[0].axes[0]
    cells = [int(t.get_text()) for t in ax.texts]
    assert cells == np.asarray(report["confusion_matrix"]).ravel().tolist()  # row-major: rows are the truth
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "test")
    png = cv2.imread(str(tmp_path / "cm.png"))
    assert png is not None and png.shape[0] > 100


def test_roc_curves_their_areas_and_one_chance_line(drawn, tmp_path) -> None:
    report = report_of(1)
    plots.plot_roc(report["roc"], report["auc"], tmp_path / "roc.png", "ROC")
    ax = drawn[0].axes[0]
    curves = {line.get_label(): line for line in ax.get_lines()}
    assert len(curves) == len(report["roc"]) + 1
    for name, curve in report["roc"].items():
        area = float(np.sum(np.diff(curve["fpr"]) * (np.array(curve["tpr"][1:]) + curve["tpr"][:-1]) / 2))
        line = curves[f"{name} (AUC = {area:.2f})"]
        np.testing.assert_allclose(line.get_xdata(), curve["fpr"])
        np.testing.assert_allclose(line.get_ydata(), curve["tpr"])
    chance = [line for label, line in curves.items() if "chance" in label.lower()]
    assert len(chance) == 1 and list(chance[0].get_xdata()) == [0, 1]
    assert ax.get_title() == f"ROC (AUC {report['auc']:.3f})"
    assert cv2.imread(str(tmp_path / "roc.png")) is not None


def test_a_matrix_that_does_not_fit_the_class_names_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        plots.plot_confusion_matrix([[1, 2, 3], [4, 5, 6], [7, 8, 9]], ["a", "b"], tmp_path / "cm.png", "t")
    assert not (tmp_path / "cm.png").exists()


@pytest.mark.parametrize("matrix", [[[3.0, 1.0], [0.0, 4.0]], [[0.75, 0.25], [0.0, 1.0]]])
def test_a_float_confusion_matrix_is_drawn(tmp_path, matrix) -> None:
    """Read back from a report's JSON or normalised: 'Unknown format code 'd' for object of type 'float''."""
    plots.plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "cm.png", "cm")
    assert cv2.imread(str(tmp_path / "cm.png")) is not None


@pytest.mark.parametrize("auc", [None, float("nan")])
def test_an_undefined_auc_is_titled_so(tmp_path, auc) -> None:
    """A report's AUC is null where undefined: plot_roc failed on formatting None."""
    roc = {"a": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]}}
    plots.plot_roc(roc, auc, tmp_path / "roc.png", "test")
    plots.plot_roc({}, auc, tmp_path / "empty.png", "test")
    assert cv2.imread(str(tmp_path / "roc.png")) is not None and cv2.imread(str(tmp_path / "empty.png")) is not None


def luminance(colour) -> float:
    """Relative brightness of a matplotlib colour, 0 black to 1 white."""
    from matplotlib.colors import to_rgb

    red, green, blue = to_rgb(colour)
    return 0.299 * red + 0.587 * green + 0.114 * blue


@pytest.mark.parametrize("counts, empty", [
    ([[2, 1, 0], [0, 0, 0], [1, 0, 1]], [1]),  # a class with no sample in the test part
    ([[0, 0], [3, 1]], [0]),
    ([[0, 0, 0], [0, 0, 0], [0, 4, 0]], [0, 1]),
])
def test_a_normalised_matrix_with_an_empty_row_keeps_every_cell_readable(drawn, tmp_path, counts, empty) -> None:
    """The empty row's NaN made scikit-learn draw every text in the lightest colour: the zeros, on near-white cells,
    could not be seen."""
    counts = np.asarray(counts, float)
    with np.errstate(invalid="ignore"):
        matrix = counts / counts.sum(axis=1, keepdims=True)
    plots.plot_confusion_matrix(matrix, [f"c{k}" for k in range(len(counts))], tmp_path / "cm.png", "normalised")
    ax = drawn[0].axes[0]
    image = ax.images[0]
    for (i, j), text in zip(np.ndindex(matrix.shape), ax.texts):
        if i in empty or matrix[i, j] == 0:  # the near-white cells: a NaN one is left blank, the axes' colour shows
            cell = ax.get_facecolor() if i in empty else image.to_rgba(matrix[i, j])
            assert abs(luminance(text.get_color()) - luminance(cell)) > 0.5, (i, j, text.get_text())
        assert text.get_text() == ("\N{EN DASH}" if i in empty else f"{matrix[i, j]:.2f}")


@pytest.mark.parametrize("count", [3, 12, 20, 25, 80])
def test_every_roc_curve_has_a_colour_and_line_style_of_its_own(drawn, tmp_path, count: int) -> None:
    """matplotlib's colour cycle has 10 colours: from 11 classes on two curves (and their legend entries) looked the
    same."""
    from matplotlib.colors import to_rgba

    roc = {f"class {k}": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]} for k in range(count)}
    plots.plot_roc(roc, 0.65, tmp_path / "roc.png", "ROC")
    ax = drawn[0].axes[0]
    lines = [line for line in ax.get_lines() if "chance" not in line.get_label().lower()]
    styles = {(to_rgba(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(lines) == count and len(styles) == count


def drawn_text(text) -> str:
    """What matplotlib draws for a ``Text``: its string as written, or ``<math ...>`` where it draws a formula
    (matplotlib's own preprocessing step before drawing)."""
    shown, math = text._preprocess_math(text.get_text())
    return f"<math {shown}>" if math else shown


@pytest.mark.parametrize("name", ["$5-$10 lesion", "$\\frac{a$", "US$ only", "plain"])
def test_names_with_dollar_signs_are_drawn_as_written(drawn, tmp_path, name: str) -> None:
    """matplotlib takes the text between two $ for a formula: a class named "$5-$10 lesion" was drawn as 5 - 10,
    and one named "$\\frac{a$" failed the report writer (and the training) with a mathtext ValueError at the save."""
    names = [name, "other"]
    plots.plot_confusion_matrix([[1, 2], [3, 4]], names, tmp_path / "cm.png", name)
    plots.plot_roc({n: {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]} for n in names}, 0.8, tmp_path / "roc.png", name)
    matrix, roc = drawn[0].axes[0], drawn[1]
    assert [drawn_text(t) for t in matrix.get_xticklabels()] == names
    assert [drawn_text(t) for t in matrix.get_yticklabels()] == names and drawn_text(matrix.title) == name
    assert [drawn_text(t) for t in roc.legends[0].get_texts()][:2] == [f"{n} (AUC = 0.65)" for n in names]
    assert drawn_text(roc.axes[0].title) == f"{name} (AUC 0.800)"
