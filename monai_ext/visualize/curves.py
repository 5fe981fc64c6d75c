"""Line plots of metrics against a step (epochs of pretraining, labels per class)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_ext.io.figures import save_figure


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    bands: Mapping[str, Sequence[float]] | None = None,
    log_x: bool = False,
) -> None:
    """Write one line per named curve as a PNG (atomically).

    Args:
        curves: name -> (x values, y values), the same length.
        path: the PNG file.
        title, xlabel, ylabel: labels.
        bands: optional name -> per-point half-widths drawn as a shaded band (e.g. a std over seeds).
        log_x: logarithmic x axis (labels per class).
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
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if bands and name in bands:
            low = [y - b for y, b in zip(ys, bands[name])]
            high = [y + b for y, b in zip(ys, bands[name])]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
