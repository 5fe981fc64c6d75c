"""The representation monitor: cross-validated kNN/probe scores, its schedule and its outputs (its MLflow logging
against a live server: tests/handlers/test_tracking.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from monai_ext.handlers.representation import RepresentationMonitor, cross_validated_scores
from monai_ext.networks.classifier import ViTClassifier

TINY = {"img_size": 32, "patch_size": 16, "embed_dim": 24, "depth": 2, "num_heads": 2}


def test_scores_are_near_perfect_on_separable_and_near_chance_on_shuffled_labels() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.standard_normal((60, 8)) + 4.0 * np.eye(8)[labels]
    good = cross_validated_scores(features, labels, ["a", "b", "c"])
    bad = cross_validated_scores(features, rng.permutation(labels), ["a", "b", "c"])
    assert good["knn_accuracy"] > 0.95 and good["probe_accuracy"] > 0.95 and good["probe_auc"] > 0.98
    assert bad["knn_accuracy"] < 0.6 and bad["probe_accuracy"] < 0.6


@pytest.mark.parametrize("smallest", [1, 2])
def test_a_class_with_too_few_images_is_refused(smallest) -> None:
    with pytest.raises(ValueError, match="at least 3 images"):
        cross_validated_scores(np.zeros((4 + smallest, 2)), np.array([0] * 4 + [1] * smallest), ["a", "b"])


@pytest.mark.parametrize("smallest", [3, 4, 5, 6])
def test_the_fewest_images_a_check_takes_give_scores(smallest) -> None:
    """2 to 4 images of a class passed the count check, then failed inside scikit-learn's inner split."""
    rng = np.random.default_rng(smallest)
    labels = np.array([0] * 8 + [1] * smallest)
    scores = cross_validated_scores(rng.standard_normal((len(labels), 4)) + labels[:, None], labels, ["a", "b"])
    assert set(scores) == {"knn_accuracy", "knn_macro_f1", "probe_accuracy", "probe_macro_f1", "probe_auc"}


def make_monitor(tmp_path, interval: int, max_epochs: int = 5) -> RepresentationMonitor:
    items = [{"image": torch.randn(3, 32, 32) + (2.0 if i % 2 else -2.0), "label": i % 2} for i in range(20)]
    return RepresentationMonitor(ViTClassifier(2, **TINY).train(), items, ["a", "b"], transform=None,
                                 output_dir=tmp_path, interval=interval, max_epochs=max_epochs, batch_size=8)


@pytest.mark.parametrize(("interval", "checked"), [(2, [0, 2, 4, 5]), (5, [0, 5]), (1, [0, 1, 2, 3, 4, 5])])
def test_checks_run_every_interval_at_the_start_and_at_the_last_epoch(tmp_path, interval, checked) -> None:
    monitor = make_monitor(tmp_path, interval)
    assert [e for e in range(6) if monitor.due(e)] == checked


def test_a_check_fills_the_evaluator_metrics_json_and_png(tmp_path) -> None:
    monitor = make_monitor(tmp_path, interval=1)
    engine = Engine(lambda e, b: None)
    for epoch in (0, 1):
        engine.state.epoch, engine.state.metrics = epoch, {"val_loss": 1.0}
        monitor(engine)
    assert {"monitor_knn_accuracy", "monitor_probe_accuracy", "monitor_probe_auc"} <= set(engine.state.metrics)
    assert [h["epoch"] for h in json.loads((tmp_path / "representation.json").read_text())] == [0, 1]
    assert (tmp_path / "reconstructions" / "representation_quality.png").stat().st_size > 1000
    assert monitor.network.training  # restored after extraction in eval mode


def test_unchecked_epochs_carry_no_stale_scores(tmp_path) -> None:
    monitor = make_monitor(tmp_path, interval=2)
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_loss": 1.0}
    for epoch, checked in ((0, True), (1, False), (2, True)):
        engine.state.epoch = epoch
        engine.state.metrics["val_loss"] = 1.0  # the evaluator keeps its metrics dict from run to run
        monitor(engine)
        assert ("monitor_knn_accuracy" in engine.state.metrics) is checked, epoch


def _loaded(item: dict) -> dict:
    """The loading stand-in: a file holding 'bad' cannot be read (as a truncated PNG or an unreadable DICOM)."""
    if "bad" in str(item["image"]):
        raise ValueError(f"{item['image']}: cannot decode")
    return {**item, "image": torch.randn(3, 32, 32) + (2.0 if item["label"] else -2.0)}


def test_unreadable_monitor_images_are_left_out_and_named_before_training(tmp_path) -> None:
    """A user's classification datalist with one unreadable image killed the whole pretraining run at its first
    check (epoch 0), after model.pt had been written."""
    items = [{"image": f"case{i}.png", "label": i % 2} for i in range(12)] + [{"image": "bad.dcm", "label": 1}]
    monitor = RepresentationMonitor(ViTClassifier(2, **TINY).train(), items, ["a", "b"], _loaded, tmp_path,
                                    interval=1, max_epochs=1, batch_size=8)
    assert len(monitor.items) == 12 and [s["image"] for s in monitor.dataset.skipped] == ["bad.dcm"]
    engine = Engine(lambda e, b: None)
    engine.state.epoch, engine.state.metrics = 0, {}
    monitor(engine)
    assert "monitor_knn_accuracy" in engine.state.metrics


def test_the_figure_names_the_folds_used_not_those_asked_for(tmp_path, monkeypatch) -> None:
    """Classes of 3 images cap 5 folds at 3; the figure's title still said "5-fold"."""
    import monai_ext.handlers.representation as module

    titles = []
    monkeypatch.setattr(module, "plot_curves", lambda curves, path, title, *rest, **options: titles.append(title))
    items = [{"image": torch.randn(3, 32, 32) + (2.0 if i % 2 else -2.0), "label": i % 2} for i in range(6)]
    monitor = RepresentationMonitor(ViTClassifier(2, **TINY).train(), items, ["a", "b"], transform=None,
                                    output_dir=tmp_path, interval=1, max_epochs=1, batch_size=8)
    engine = Engine(lambda e, b: None)
    engine.state.epoch, engine.state.metrics = 0, {}
    monitor(engine)
    assert titles == ["encoder features on 6 labelled images (2 classes, 3-fold)"]


def test_a_class_left_with_one_readable_image_is_refused_before_training(tmp_path) -> None:
    items = [{"image": f"case{i}.png", "label": 0} for i in range(6)]
    items += [{"image": "one.png", "label": 1}, {"image": "two.png", "label": 1}, {"image": "bad.png", "label": 1}]
    with pytest.raises(ValueError, match=r"at least 3 readable images of every class; too few: \{'b': 2\} "
                                         r"\(1 unreadable image\(s\) left out\)"):
        RepresentationMonitor(ViTClassifier(2, **TINY).train(), items, ["a", "b"], _loaded, tmp_path, interval=1)


def test_off_by_default_needs_no_labelled_set(tmp_path) -> None:
    RepresentationMonitor(torch.nn.Linear(1, 1), [], [], None, tmp_path, interval=0).attach(Engine(lambda e, b: None))
    with pytest.raises(ValueError, match="two classes"):
        RepresentationMonitor(torch.nn.Linear(1, 1), [], [], None, tmp_path, interval=1)


@pytest.mark.parametrize("datalist_file", [2024, "2024", 2024.1])
def test_a_monitor_datalist_typed_as_a_number_is_read(datalist_file, tmp_path, monkeypatch) -> None:
    """``--monitor_datalist 2024`` reaches the config as the int 2024: the file '2024'; 2024.1 is refused by name."""
    from PIL import Image

    from monai_ext.handlers.representation import monitor_items

    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    parts = {"train": [{"image": "a.png", "label": 0}], "validation": [{"image": "b.png", "label": 1}]}
    (tmp_path / "2024").write_text(json.dumps({"class_names": ["x", "y"], **parts}))
    if isinstance(datalist_file, float):
        with pytest.raises(ValueError, match=r"monitor_datalist must be text \(a path or a name\), got float 2024\.1"):
            monitor_items(datalist_file, "cache")
        return
    items, class_names = monitor_items(datalist_file, "cache")
    assert class_names == ["x", "y"] and [it["label"] for it in items] == [0, 1]


@pytest.mark.parametrize("per_class, refused", [(2, True), (0, True), ("4", True), (3, False), (4, False)])
def test_the_benchmark_monitor_set_takes_three_images_per_class(tmp_path, per_class, refused) -> None:
    """--monitor_per_class 3 or 4 was refused with a message about folds, a setting the user never gave."""
    from monai_ext.handlers.representation import monitor_items

    if refused:
        with pytest.raises(ValueError, match=f"monitor_per_class must be a whole number of at least 3, got {per_class!r}"):
            monitor_items(None, tmp_path, per_class=per_class)
        return
    items, class_names = monitor_items(None, tmp_path, per_class=per_class)
    assert len(class_names) == 4 and len(items) == 4 * per_class
