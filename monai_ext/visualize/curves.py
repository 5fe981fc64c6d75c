"""Line plots of metrics against a step (epochs of pretraining, labels per class)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_ext.io.figures import save_figure
from monai_ext.visualize.plots import literal_text


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    bands: Mapping[str, Sequence[float]] | None = None,
    log_x: bool = False,
    ylim: tuple[float, float] | None = None,
    reference_lines: Sequence[tuple[float, str]] = (),
    integer_x: bool = False,
) -> None:
    """Write one line per named curve as a PNG (atomically).

    Args:
        curves: name -> (x values, y values), the same length.
        path: the PNG file.
        title, xlabel, ylabel: labels.
        bands: optional name -> per-point half-widths drawn as a shaded band (e.g. a std over seeds).
        log_x: logarithmic x axis (labels per class).
        ylim: fixed y limits (scores in [0, 1]: autoscaled, a change of 0.01 filled the plot); None autoscales.
        reference_lines: (y, label) pairs drawn as gray horizontal lines, dashed, then dotted (e.g. chance).
        integer_x: ticks at whole x values only (epochs: no tick at 0.5).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("no curves to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys):
            raise ValueError(f"curve {name!r} has {len(xs)} x values and {len(ys)} y values")
        # unclipped: a marker at a fixed limit (an accuracy of 1) is drawn whole
        (line,) = ax.plot(xs, ys, marker="o", label=literal_text(name), clip_on=ylim is None)
        if bands and name in bands:
            low = [y - b for y, b in zip(ys, bands[name])]
            high = [y + b for y, b in zip(ys, bands[name])]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    for (y, label), style in zip(reference_lines, ("--", ":", "-.") * len(reference_lines)):
        ax.axhline(y, color="gray", linestyle=style, linewidth=1, label=label)  # styles tell the lines apart
    if log_x:
        ax.set_xscale("log")
    if integer_x:
        _whole_x_ticks(ax, [x for xs, _ in curves.values() for x in xs])
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(literal_text(title))  # a data set's name, drawn as written
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _whole_x_ticks(ax: Any, xs: Sequence[float]) -> None:
    """Ticks at whole x values only: matplotlib's ``MaxNLocator(integer=True)``, or, for one x value, a tick at it
    alone.

    Args:
        ax: the matplotlib axes.
        xs: every x value drawn (whole numbers: epochs).
    """
    from matplotlib.ticker import MaxNLocator

    present = set(xs)
    if len(present) == 1:
        # one point (the first epoch's plot) spans x +- 0.05: with no two whole values in that span MaxNLocator
        # gives up on integer=True and ticked -0.045, ..., 0.045
        ax.set_xticks(sorted(present))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_errorbar_panels(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]],
    path: Path,
    title: str,
    xlabel: str,
    log_x: bool = False,
    reference_lines: Mapping[str, tuple[float, str]] | None = None,
) -> None:
    """Write side-by-side panels, one per metric, each with one error-bar line per named curve, as a PNG.

    Args:
        panels: panel title (the metric, also its y label) -> curve name -> (x values, means, error half-widths),
            all three the same length.
        path: the PNG file (written atomically).
        title: figure title.
        xlabel: x label of every panel.
        log_x: logarithmic x axis, ticks at the x values themselves (labels per class: 10, 25, 50, 100).
        reference_lines: optional panel title -> (y, label) drawn as a dashed horizontal line (e.g. chance).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    if not panels or not all(panels.values()):
        raise ValueError("no curves to plot")
    for metric, curves in panels.items():  # all checked before a figure exists, so a bad input leaks none
        for name, (xs, ys, errs) in curves.items():
            if not len(xs) == len(ys) == len(errs):
                raise ValueError(f"curve {name!r} of {metric!r} has {len(xs)} x values, {len(ys)} y values and "
                                 f"{len(errs)} error bars")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), dpi=120, squeeze=False)
    for ax, (metric, curves) in zip(axes[0], panels.items()):
        for name, (xs, ys, errs) in curves.items():
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4, label=literal_text(name))
        if reference_lines and metric in reference_lines:
            y, label = reference_lines[metric]
            ax.axhline(y, color="gray", linestyle="--", linewidth=1, label=label)
        if log_x:
            ax.set_xscale("log")
            ax.set_xticks(sorted({x for xs, _, _ in curves.values() for x in xs}))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(literal_text(title), fontsize=10)  # "<data set>: full fine-tuning, ...", drawn as written
    fig.tight_layout()
    save_figure(fig, path)
