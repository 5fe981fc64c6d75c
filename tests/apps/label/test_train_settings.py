"""A MONAI Label train request's parameters and the bundle settings they become (no MONAI Label needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monai_ext.apps.label.train_settings import TRAIN_DEFAULTS, bundle_train_settings, train_parameters


def test_what_monai_label_adds_to_a_train_request_is_left_alone() -> None:
    request = {"model": "usf_mae_classifier", "usf_mae_classifier": {"max_epochs": 2}, "bundle_path": "/b",
               "description": "train", "device": "cpu", "max_epochs": 2}
    assert train_parameters(request)["max_epochs"] == 2


@pytest.mark.parametrize("request_values, expected", [
    ({}, {"val_fraction": 0.2, "base_lr": None}),
    ({"val_fraction": "0.3"}, {"val_fraction": 0.3}),  # a client's option table sends text
    ({"val_fraction": 0.25, "base_lr": "1e-3"}, {"val_fraction": 0.25, "base_lr": 1e-3}),
    ({"base_lr": ""}, {"base_lr": None}),  # an untouched None default, sent back as an empty cell
    ({"base_lr": "None"}, {"base_lr": None}),
    ({"base_lr": 2}, {"base_lr": 2.0}),
])
def test_parameters_come_out_as_numbers(request_values, expected) -> None:
    params = train_parameters(request_values)
    for key, value in expected.items():
        assert params[key] == value and (value is None or isinstance(params[key], float))
    assert set(params) == set(TRAIN_DEFAULTS)


@pytest.mark.parametrize("key, text, expected", [("max_epochs", "3", 3), ("batch_size", " 16 ", 16),
                                                 ("num_workers", "0", 0), ("seed", "+7", 7)])
def test_an_integer_written_as_text_is_read(key, text, expected) -> None:
    """A client whose option table sends every value as text had integer settings refused (val_fraction was read)."""
    params = train_parameters({key: text})
    assert params[key] == expected and type(params[key]) is int


@pytest.mark.parametrize("request_values, message", [
    ({"val_fraction": "a third"}, "'val_fraction' must be in (0, 0.5), got 'a third'"),
    ({"val_fraction": 0.5}, "'val_fraction' must be in (0, 0.5), got 0.5"),
    ({"val_fraction": "nan"}, "'val_fraction' must be in (0, 0.5), got 'nan'"),
    ({"val_fraction": True}, "'val_fraction' must be in (0, 0.5), got True"),
    ({"base_lr": -1}, "'base_lr' must be a positive number, got -1"),
    ({"base_lr": "fast"}, "'base_lr' must be a positive number, got 'fast'"),
    ({"max_epochs": "2.5"}, "'max_epochs' must be an integer of at least 1, got '2.5'"),
    ({"max_epochs": "0"}, "'max_epochs' must be an integer of at least 1, got '0'"),
    ({"seed": "-1"}, "'seed' must be an integer of at least 0, got '-1'"),
    ({"seed": "+-3"}, "'seed' must be an integer of at least 0, got '+-3'"),
    ({"max_epochs": "\u00b2"}, "'max_epochs' must be an integer of at least 1, got '\u00b2'"),  # superscript two
    ({"max_epochs": "\uff13"}, "'max_epochs' must be an integer of at least 1, got '\uff13'"),  # full-width three
    ({"num_workers": 1.0}, "'num_workers' must be an integer of at least 0, got 1.0"),
    ({"batch_size": 0}, "'batch_size' must be an integer of at least 1, got 0"),
    # misspelt: ignored, and the run trained with the default
    ({"epochs": 2}, "train parameter 'epochs' is not one (did you mean 'max_epochs'"),
    ({"batchsize": 4}, "train parameter 'batchsize' is not one (did you mean 'batch_size'"),
])
def test_bad_parameters_are_refused_quoting_the_value(request_values, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        train_parameters(request_values)


@pytest.mark.parametrize("device, overrides, expected", [
    (None, {}, None),  # the bundle chooses
    ("cpu", {}, "$torch.device('cpu')"),
    ("cuda:1", {}, "$torch.device('cuda:1')"),  # GPU 0 kept for other work: training follows serving
    ("cuda:1", {"device": "$torch.device('cuda:2')"}, "$torch.device('cuda:2')"),  # the app's overrides win
])
def test_training_runs_on_the_apps_device(tmp_path, device, overrides, expected) -> None:
    params = train_parameters({"batch_size": 16, "base_lr": "0.01"})
    settings = bundle_train_settings(Path("/b"), tmp_path / "d.json", Path("/m.pt"), tmp_path / "run", params, 5,
                                     {"arch": "vit_tiny", "image_size": 64}, overrides, device)
    assert settings.get("device") == expected
    assert (settings["batch_size"], settings["base_lr"], settings["arch"]) == (5, 0.01, "vit_tiny")
    assert settings["init_checkpoint"] == "/m.pt" and settings["ckpt_dir"] == str(tmp_path / "run" / "models")
