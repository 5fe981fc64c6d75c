"""The representation monitor's plot: whole epochs on the x axis, scores on [0, 1] with what chance scores, and a
y label that names them."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_ext.handlers.representation import RepresentationMonitor
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.visualize import curves

TINY = {"img_size": 32, "patch_size": 16, "embed_dim": 24, "depth": 2, "num_heads": 2}


@pytest.mark.parametrize(("classes", "chance"), [(4, {0.25, 0.5}), (2, {0.5})])
def test_the_monitor_plot_has_whole_epochs_a_unit_score_axis_and_chance_lines(keep_figures, tmp_path, classes,
                                                                                chance) -> None:
    drawn = keep_figures(curves)
    items = [{"image": torch.randn(3, 32, 32), "label": i % classes} for i in range(4 * classes)]
    monitor = RepresentationMonitor(ViTClassifier(classes, **TINY), items, [f"c{k}" for k in range(classes)],
                                    transform=None, output_dir=tmp_path, interval=1, max_epochs=2, batch_size=8)
    scores = iter([{"knn_accuracy": a, "knn_macro_f1": a, "probe_accuracy": a, "probe_macro_f1": a, "probe_auc": a + 0.2}
                   for a in (0.41, 0.43)])
    monitor.folds_used = 3
    monitor.scores = lambda: next(scores)  # the plot, not the features, is under test
    engine = Engine(lambda e, b: None)
    for epoch in (0, 1):  # two points: autoscaled ticks fell at 0.25, 0.5, ...
        engine.state.epoch, engine.state.metrics = epoch, {}
        monitor(engine)
    ax = drawn[-1].axes[0]
    assert ax.get_ylim() == (0.0, 1.0)  # autoscaled, a change of 0.02 filled the plot
    ticks = [t.get_text().replace("\N{MINUS SIGN}", "-") for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.lstrip("-").isdigit() for t in ticks)
    assert ax.get_ylabel() not in ("", "score") and "AUC" in ax.get_ylabel()
    dashed = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() != "-"]
    assert sorted(dashed) == pytest.approx(sorted(chance))


@pytest.mark.parametrize(("counts", "chance"), [((27, 3), {0.9, 0.5}), ((12, 3, 3), {2 / 3, 0.5}),
                                                ((3, 3, 3, 3), {0.25, 0.5}), ((6, 3, 3), {0.5}), ((5, 5), {0.5})])
def test_the_chance_accuracy_line_is_the_largest_class_share(keep_figures, tmp_path, counts, chance) -> None:
    """A line at 1/K made noise look like a representation on an imbalanced set: at 90 % of one class random features
    scored a kNN accuracy of 0.84, far above a 'chance' line at 0.5; always answering the largest class scores 0.9."""
    drawn = keep_figures(curves)
    labels = [k for k, count in enumerate(counts) for _ in range(count)]
    items = [{"image": torch.randn(3, 32, 32), "label": label} for label in labels]
    monitor = RepresentationMonitor(ViTClassifier(len(counts), **TINY), items, [f"c{k}" for k in range(len(counts))],
                                    transform=None, output_dir=tmp_path, interval=1, max_epochs=1, batch_size=8)
    monitor.scores = lambda: dict.fromkeys(("knn_accuracy", "knn_macro_f1", "probe_accuracy", "probe_macro_f1",
                                            "probe_auc"), 0.6)
    engine = Engine(lambda e, b: None)
    engine.state.epoch, engine.state.metrics = 0, {}
    monitor(engine)
    ax = drawn[-1].axes[0]
    dashed = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() != "-"]
    assert sorted(dashed) == pytest.approx(sorted(chance))
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert sum("chance" in text for text in legend) == len(chance)
