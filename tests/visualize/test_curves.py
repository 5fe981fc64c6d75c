"""Error-bar panels (the label-efficiency figure): what is drawn equals what was given, and the PNG is written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.visualize import curves


@pytest.fixture
def drawn(keep_figures) -> list:
    """The figures saved, kept open for inspection (they are still written)."""
    return keep_figures(curves)


def test_each_panel_draws_its_curves_error_bars_and_reference_line(drawn, tmp_path) -> None:
    xs = [10, 25, 50, 100]
    panels = {"F1": {"a": (xs, [30.0, 40.0, 50.0, 60.0], [1.0, 2.0, 3.0, 4.0]), "b": (xs, [20.0, 25.0, 30.0, 35.0],
                                                                                       [0.5, 0.5, 0.5, 0.5])},
              "AUC": {"a": (xs, [55.0, 60.0, 70.0, 80.0], [2.0, 2.0, 2.0, 2.0])}}
    curves.plot_errorbar_panels(panels, tmp_path / "p.png", "title", "labels", log_x=True,
                                reference_lines={"AUC": (50.0, "chance")})
    left, right = drawn[0].axes
    assert (left.get_title(), right.get_title(), left.get_xscale()) == ("F1", "AUC", "log")
    assert list(left.get_xticks()) == xs
    for ax, curves_of in ((left, panels["F1"]), (right, panels["AUC"])):
        for container, (name, (x, y, err)) in zip(ax.containers, curves_of.items()):
            line, _, (bars,) = container
            assert container.get_label() == name and list(line.get_xdata()) == x and list(line.get_ydata()) == y
            spans = [seg[1, 1] - seg[0, 1] for seg in bars.get_segments()]
            assert spans == pytest.approx([2 * e for e in err])
    assert [line.get_ydata()[0] for line in right.lines if line.get_linestyle() == "--"] == [50.0]
    assert not [line for line in left.lines if line.get_linestyle() == "--"]
    png = cv2.imread(str(tmp_path / "p.png"))
    assert png is not None and png.shape[1] > 2 * png.shape[0] * 0.9 and float(np.std(png)) > 10


@pytest.mark.parametrize("panels, message", [({}, "no curves"), ({"F1": {}}, "no curves"),
                                             ({"F1": {"a": ([1, 2], [1.0], [0.0, 0.0])}}, "2 x values, 1 y values")])
def test_bad_panels_are_refused(tmp_path, panels: dict, message: str) -> None:
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    with pytest.raises(ValueError, match=message):
        curves.plot_errorbar_panels(panels, tmp_path / "p.png", "t", "x")
    assert plt.get_fignums() == open_before  # no figure left open by the refusal
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("xs", [[0], [7], [3, 3]], ids=["epoch-0", "epoch-7", "one-x-twice"])
def test_one_whole_x_value_is_ticked_as_a_whole_number(drawn, tmp_path, xs: list[int]) -> None:
    """The first epoch's monitor plot has one point: its axis spans x +- 0.05, where MaxNLocator(integer=True) finds
    no two whole values and ticked -0.045, ..., 0.045."""
    curves.plot_curves({"kNN accuracy": (xs, [0.5] * len(xs)), "probe AUC": (xs, [float("nan")] * len(xs))},
                       tmp_path / "c.png", "t", "epoch", "score", ylim=(0.0, 1.0), integer_x=True)
    ax = drawn[0].axes[0]
    ticks = [float(t) for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks == [xs[0]] and labels == [str(xs[0])]


@pytest.mark.parametrize("xs", [[0, 1], [0, 5, 10]])
def test_several_x_values_are_ticked_at_whole_numbers(drawn, tmp_path, xs: list[int]) -> None:
    curves.plot_curves({"a": (xs, [0.5] * len(xs))}, tmp_path / "c.png", "t", "epoch", "score", integer_x=True)
    ticks = drawn[0].axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


@pytest.mark.parametrize("name", ["$5-$10 data", "$\\frac{a$", "plain"])
def test_titles_and_curve_names_with_dollar_signs_are_drawn_as_written(drawn, tmp_path, name: str) -> None:
    """A data set's name reaches the label-efficiency figure's title: between two $ matplotlib drew a formula, and
    a malformed one ("$\\frac{a$") failed the figure when saved."""
    curves.plot_errorbar_panels({"F1": {name: ([10, 20], [0.5, 0.6], [0.1, 0.1])}}, tmp_path / "p.png", name, "x")
    curves.plot_curves({name: ([1, 2], [0.5, 0.6])}, tmp_path / "c.png", name, "epoch", "score")
    panels, lines = drawn
    shown = [text._preprocess_math(text.get_text()) for text in (panels._suptitle, *panels.axes[0].get_legend().texts,
                                                                 lines.axes[0].title, *lines.axes[0].get_legend().texts)]
    assert shown == [(name, False)] * 4
