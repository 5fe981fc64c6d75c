"""The settings of a MONAI Label train request: its parameters, checked, and the bundle settings they become.

Apart from the train task (:mod:`monai_ext.apps.label.bundle_train`) because they do not need MONAI Label: the main
environment tests them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: Request parameters and their defaults (shown to clients by ``/info/``). ``base_lr`` None keeps the bundle's.
TRAIN_DEFAULTS: dict[str, Any] = {"max_epochs": 10, "batch_size": 8, "num_workers": 2, "val_fraction": 0.2, "seed": 0,
                                  "base_lr": None}


def train_parameters(request: Mapping[str, Any]) -> dict[str, Any]:
    """Request values over :data:`TRAIN_DEFAULTS`, checked, numbers as numbers.

    Clients send what their option tables hold: ``val_fraction`` may come as the text ``"0.3"``, ``max_epochs`` as
    ``"3"``, and an untouched ``base_lr`` (default None) as ``""`` or ``"None"``, meaning the bundle's own.

    Raises:
        ValueError: quoting the parameter and its bad value.
    """
    _refuse_misspelt(request)
    params = {key: request.get(key, default) for key, default in TRAIN_DEFAULTS.items()}
    for key, lowest in (("max_epochs", 1), ("batch_size", 1), ("num_workers", 0), ("seed", 0)):
        params[key] = _integer(params[key], key, lowest)
    if isinstance(params["base_lr"], str) and params["base_lr"].strip().lower() in ("", "none", "null"):
        params["base_lr"] = None
    params["base_lr"] = _number(params["base_lr"], "base_lr", "a positive number", lambda v: v > 0, none_ok=True)
    params["val_fraction"] = _number(params["val_fraction"], "val_fraction", "in (0, 0.5)", lambda v: 0 < v < 0.5)
    return params


def _refuse_misspelt(request: Mapping[str, Any]) -> None:
    """Refuse a parameter spelt close to one of :data:`TRAIN_DEFAULTS` (``epochs`` for ``max_epochs``): it was
    ignored, and the run trained with the default. The request also holds what MONAI Label adds (the model's name,
    its settings, ``bundle_path``), which is left alone.

    Raises:
        ValueError: naming the parameter and the one meant.
    """
    import difflib

    for key, value in request.items():
        if key in TRAIN_DEFAULTS or not isinstance(key, str) or isinstance(value, (dict, list)):
            continue
        meant = difflib.get_close_matches(key, list(TRAIN_DEFAULTS), 1, 0.7)
        if meant:
            raise ValueError(f"train parameter {key!r} is not one (did you mean {meant[0]!r}?); the parameters are "
                             f"{sorted(TRAIN_DEFAULTS)}")


def _integer(value: Any, key: str, lowest: int) -> int:
    """``value`` (an integer, or one written as text: ``"3"``, not ``"2.5"`` or ``True``) as an int of at least
    ``lowest``."""
    number = int(value) if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value, re.ASCII) else value
    if isinstance(number, bool) or not isinstance(number, int) or number < lowest:
        raise ValueError(f"train parameter {key!r} must be an integer of at least {lowest}, got {value!r}")
    return number


def _number(value: Any, key: str, wanted: str, valid: Callable[[float], bool], none_ok: bool = False) -> float | None:
    """``value`` (a number, or a number written as text) as a float that ``valid`` accepts."""
    if value is None and none_ok:
        return None
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not valid(number):  # NaN fails every comparison
        raise ValueError(f"train parameter {key!r} must be {wanted}, got {value!r}")
    return number


def bundle_train_settings(bundle_root: Path, datalist: Path, start_from: Path, run_dir: Path,
                          params: Mapping[str, Any], train_size: int, checkpoint_overrides: Mapping[str, Any],
                          overrides: Mapping[str, Any], device: str | None) -> dict[str, Any]:
    """The ``monai.bundle.run`` settings of one fine-tuning run of the bundle at ``bundle_root``.

    Args:
        datalist: the labels as the bundle's datalist.
        start_from: the checkpoint served now, the run's ``init_checkpoint``.
        run_dir: the run's folder (``models/``, ``eval/``, ``cache/``).
        params: the checked request parameters (:func:`train_parameters`).
        train_size: images in the training part.
        checkpoint_overrides: settings the checkpoint's architecture record fixes.
        overrides: the app's ``overrides`` conf; they win over everything else.
        device: the app's ``device`` conf (``cpu``, ``cuda:1``); None lets the bundle choose (CUDA 0 when there is
            one). Training goes where serving goes: a team that keeps GPU 0 for other work says so once.
    """
    configs = bundle_root / "configs"
    settings: dict[str, Any] = {
        "meta_file": str(configs / "metadata.json"),
        "logging_file": str(configs / "logging.conf"),
        "bundle_root": str(bundle_root),
        "datalist_file": str(datalist),
        "init_checkpoint": str(start_from),
        "ckpt_dir": str(run_dir / "models"),
        "output_dir": str(run_dir / "eval"),
        "cache_dir": str(run_dir / "cache"),
        "epochs": params["max_epochs"],
        # the training loader drops its last partial batch: never ask for more than there are images
        "batch_size": min(params["batch_size"], train_size),
        "num_workers": params["num_workers"],
        # later entries win: the app's device, the checkpoint's architecture, then the app's overrides
        **({"device": f"$torch.device({device!r})"} if device else {}),
        **checkpoint_overrides,
        **overrides,
    }
    if params["base_lr"] is not None:
        settings["base_lr"] = params["base_lr"]
    return settings
