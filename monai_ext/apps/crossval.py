"""Cross-validation runner: train and test every fold of a protocol with the classification bundle (or, for the
segmentation protocols, the segmentation bundle), for several starting points, and summarise as mean +/- std in the
paper's format.

Each fold is two ``monai.bundle`` runs in this process (train, then the ``evaluate`` overlay on the fold's test
part), so what it reports is exactly what a user gets from the bundle commands.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_ext.apps.bundle_support import as_flag, check_counts, init_architecture, locate_bundle_root
from monai_ext.apps.comparison import (
    add_knn_summary,
    classes_missing,
    comparison_table,
    fold_statistics,
    fold_value,
    knn_test_metrics,
    paired_differences,
    statistic_text,
    subtle_protocol,
)
from monai_ext.apps.cv_tracking import ParentRun
from monai_ext.data.datalists import check_split, warn_of_several_frames, write_split
from monai_ext.data.downstream import PROTOCOLS, Protocol, check_generated_size, folder_protocol, load_protocol
from monai_ext.data.segmentation import (
    SEGMENTATION_PROTOCOLS,
    load_segmentation_protocol,
    synthetic_segmentation_protocol,
)
from monai_ext.data.synthetic import synthetic_lesion_dataset
from monai_ext.handlers.checkpointing import CHECKPOINT_PATTERN, record_earlier_checkpoints
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.json_values import json_tree
from monai_ext.io.signals import StopSignal

logger = logging.getLogger(__name__)
SUMMARY_METRICS = ("macro_f1", "accuracy", "balanced_accuracy", "auc")
SEGMENTATION_METRICS = ("mean_dice", "mean_iou", "mean_hd95")
#: Metrics shown as percentages in the table; the others (HD95, in pixels) as they are.
PERCENT_METRICS = SUMMARY_METRICS + ("mean_dice", "mean_iou")
#: Protocol names read by the segmentation bundle.
SEGMENTATION_PROTOCOL_NAMES = ("synthetic-seg", *SEGMENTATION_PROTOCOLS)


def task_of(protocol_name: str) -> str:
    """"segment" for the segmentation protocols, else "classify"."""
    return "segment" if protocol_name in SEGMENTATION_PROTOCOL_NAMES else "classify"


def unet_baseline_overrides() -> dict[str, Any]:
    """MONAI's BasicUNet, the segmentation counterpart of the CNN baseline (random initialisation)."""
    network = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, "in_channels": "@in_channels",
               "out_channels": "@num_classes"}
    return {"network_def": network, "model_kind": "external", "init_checkpoint": None}


def cnn_baseline_overrides() -> dict[str, Any]:
    """A ResNet-18 from MONAI's networks, trained under the same protocol (random initialisation)."""
    network = {"_target_": "monai.networks.nets.resnet18", "spatial_dims": 2, "n_input_channels": "@in_channels",
               "num_classes": "@num_classes"}
    return {"network_def": network, "model_kind": "external", "init_checkpoint": None}


#: The starts that need no file of their own ("pretrained" reads ``init_checkpoint``).
BUILTIN_METHODS = ("pretrained", "random", "cnn")


#: Names a start cannot take: its folder would mix with these under the results folder.
RESERVED_NAMES = ("splits",)


def named_checkpoint(method: str) -> tuple[str, str] | None:
    """``"released=/data/usf_mae.pth"`` -> ``("released", "/data/usf_mae.pth")``: a start from that file, reported
    under that name, so that one cross-validation compares several checkpoints on the same folds. None for a built-in.

    Raises:
        ValueError: an empty path, or a name that is not a plain word or is a built-in start's.
    """
    if "=" not in method:
        return None
    name, path = (part.strip() for part in method.split("=", 1))
    if not re.fullmatch(r"[A-Za-z][\w-]*", name) or name in BUILTIN_METHODS + RESERVED_NAMES or not path:
        raise ValueError(f"start {method!r}: write NAME=CHECKPOINT with NAME a plain word other than "
                         f"{', '.join(BUILTIN_METHODS + RESERVED_NAMES)} (e.g. released=/data/usf_mae_100ep.pth)")
    return name, path


def method_name(method: str) -> str:
    """The name a start is reported and stored under (the part before ``=`` of a named checkpoint)."""
    named = named_checkpoint(method)
    return named[0] if named else method


def shared_architecture(init_checkpoint: str | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``overrides`` with the architecture ``init_checkpoint`` records (arch, image size, channels) where they do
    not say otherwise: every ViT start, the random one included, then builds the pretrained start's
    network, so a paired difference compares weights, not a ViT-Tiny against a ViT-B."""
    recorded = init_architecture(init_checkpoint) if init_checkpoint else {}
    return {**recorded, **(overrides or {})}


def method_overrides(method: str, init_checkpoint: str | None, task: str = "classify") -> dict[str, Any]:
    """Bundle overrides of a starting point: pretrained (``init_checkpoint``), random (ViT from scratch), cnn
    (ResNet-18 for classification, BasicUNet for segmentation) or ``NAME=CHECKPOINT`` (:func:`named_checkpoint`)."""
    named = named_checkpoint(method)
    if named:
        return {"init_checkpoint": named[1]}
    if method == "pretrained":
        if not init_checkpoint:
            raise ValueError("method 'pretrained' needs an init checkpoint (--init_checkpoint FILE); without one, "
                             "compare the others (e.g. --methods random,cnn)")
        return {"init_checkpoint": str(init_checkpoint)}
    if method == "random":
        return {"init_checkpoint": None}
    if method == "cnn":
        return unet_baseline_overrides() if task == "segment" else cnn_baseline_overrides()
    raise ValueError(f"unknown method {method!r}; choose pretrained, random, cnn or NAME=CHECKPOINT")


def check_run_inputs(methods: Sequence[str], init_checkpoint: str | os.PathLike | None,
                     overrides: Mapping[str, Any] | None, task: str = "classify",
                     tracking: str | os.PathLike | None = None, runner: str = "cross-validate") -> None:
    """Refuse what would otherwise fail only after hours of training, or after the previous run's summary was
    removed: an unknown start, an init checkpoint that cannot be read, a bundle setting the bundle does not have (a
    misspelt ``--epoch`` or ``--probe#c`` would be ignored), a yes/no setting that is neither (``--linear_probe
    maybe``), and tracking settings that do not exist.

    Args:
        methods: the starts.
        init_checkpoint: the pretrained start's weights.
        overrides: the bundle settings of every run.
        task: ``"classify"`` or ``"segment"`` (which bundle the settings are checked against).
        tracking: ``--tracking``: ``"mlflow"`` or a tracking settings file.
        runner: the command, whose words refuse a setting it sets itself (:func:`check_runner_settings`).

    Raises:
        ValueError: quoting the bad method, checkpoint, setting or tracking settings (CheckpointError is one).
        FileNotFoundError: the init checkpoint does not exist.
    """
    from monai.bundle import ConfigParser

    from monai_ext.apps.one_line_errors import defined_id
    from monai_ext.networks.checkpoints import read_checkpoint, to_state_dict

    if not methods:
        raise ValueError("methods is empty: give at least one start (pretrained, random, cnn or NAME=CHECKPOINT)")
    names = [method_name(m) for m in methods]  # also refuses a malformed NAME=CHECKPOINT
    if len(set(names)) != len(names):
        raise ValueError(f"methods {list(methods)!r}: name each start once")
    configs = Path(locate_bundle_root("usf_mae_segment" if task == "segment" else "usf_mae_classify")) / "configs"
    # the configs a fold runs: train, its evaluate overlay and the tracking settings; the whole id is checked:
    # --probe#c (for probe#cs) would be added to a plain mapping and ignored
    config: dict[str, Any] = {}
    for name in ("train.yaml", "evaluate.yaml", "mlflow_tracking.yaml"):
        if (configs / name).is_file():
            config.update(ConfigParser.load_config_file(configs / name))
    unknown = sorted(k for k in (overrides or {}) if not defined_id(config, str(k).replace("::", "#").split("#")))
    if unknown:
        raise ValueError(f"{configs.parent.name} has no setting {', '.join('--' + k for k in unknown)} "
                         f"(see its configs/train.yaml)")
    check_runner_settings(overrides or {}, runner)
    check_flag_settings(config, overrides or {})
    check_tracking(tracking)
    check_counts(overrides or {})
    check_network_settings(names, overrides or {})
    if init_checkpoint and "pretrained" not in names:
        raise ValueError(f"--init_checkpoint {str(init_checkpoint)!r} is given but no start uses it (methods "
                         f"{list(methods)!r}); add pretrained to --methods, or leave the checkpoint out")
    for method in methods:  # last: reading a base model's checkpoint takes seconds
        checkpoint = method_overrides(method, init_checkpoint, task).get("init_checkpoint")
        if checkpoint:
            to_state_dict(read_checkpoint(checkpoint))  # readable, and a layout the loaders know


#: How a config reads a yes/no setting: ``as_flag(@linear_probe, 'linear_probe')``.
_FLAG_READ = re.compile(r"as_flag\(@(\w+),")


def check_flag_settings(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Refuse a yes/no setting that is neither (``--linear_probe maybe``) before anything is touched: the bundle
    reads it with :func:`~monai_ext.apps.bundle_support.as_flag` only when the first fold's run builds its config,
    after the previous summary was removed and a tracked parent run opened. The yes/no settings are those the
    configs read that way.

    Raises:
        ValueError: naming the setting and quoting its value.
    """
    flags = set(_FLAG_READ.findall(json.dumps(config, default=str)))
    for key, value in overrides.items():
        if key in flags:
            as_flag(value, f"--{key}")


def warn_of_starts_trained_on_test_images(methods: Sequence[str], init_checkpoint: str | None,
                                          protocol: Protocol, folds: Sequence[int]) -> dict[str, list[int]]:
    """Warn, per start and fold, where a fold's test part holds images that a start's checkpoint trained or was
    selected on (a fine-tuned ``model.pt`` whose record names its datalist and images,
    :data:`~monai_ext.apps.bundle_support.TRAINED_IMAGES_SETTINGS`), or pretrained on (an MAE of the pretraining
    bundle whose record names its ``dataset_dir``, :func:`~monai_ext.apps.bundle_support.pretrained_on`): the
    fold's scores are then not of held-out images. Starts without such a record (released weights, older
    checkpoints, the synthetic default's MAE) pass silently.

    Returns:
        ``{start: [folds warned of]}`` for the starts that overlap some fold.
    """
    from monai_ext.apps.bundle_support import (
        recorded_trained_images,
        warn_of_pretraining_images,
        warn_of_trained_images,
    )
    from monai_ext.networks.checkpoints import read_checkpoint

    overlapping: dict[str, list[int]] = {}
    for method in methods:
        named = named_checkpoint(method)
        checkpoint = named[1] if named else init_checkpoint if method == "pretrained" else None
        if not checkpoint or not Path(checkpoint).expanduser().is_file():
            continue
        try:
            content = read_checkpoint(Path(checkpoint).expanduser())
        except (OSError, ValueError):  # check_run_inputs names what is wrong with it
            continue
        record = content.get("arch") if isinstance(content, Mapping) else None
        config = (record.get("config") if isinstance(record, Mapping) else None) or {}
        if recorded_trained_images(config):
            warn = warn_of_trained_images
        elif isinstance(record, Mapping) and record.get("kind") == "mae" and config.get("dataset_dir"):
            warn = warn_of_pretraining_images
        else:
            continue
        for k in folds:
            if warn(protocol.splits[k]["test"], config, checkpoint,
                    f"{protocol.name} test fold {k} (start {method_name(method)})"):
                overlapping.setdefault(method_name(method), []).append(k)
    return overlapping


def check_tracking(tracking: str | os.PathLike | None) -> None:
    """Refuse ``--tracking`` that is neither ``mlflow`` (MONAI's default settings) nor an existing settings file:
    the first fold's run would refuse it, after the previous summary was removed and a FAILED MLflow parent run
    recorded.

    Raises:
        ValueError: quoting the value.
    """
    if tracking is None or tracking == "" or str(tracking) == "mlflow":
        return
    if not Path(tracking).expanduser().is_file():
        raise ValueError(f"--tracking {str(tracking)!r} is no file; give a tracking settings file (such as the "
                         "bundle's configs/mlflow_tracking.yaml) or mlflow")


def check_network_settings(names: Sequence[str], overrides: Mapping[str, Any]) -> None:
    """Refuse an ``--arch`` no bundle builds, or an ``--image_size`` that is no multiple of the 16-pixel patch,
    before any start trains: the CNN start ignores both, so a whole CNN run finished before the first ViT start
    refused them.

    Raises:
        ValueError: quoting the value and what is accepted.
    """
    from monai_ext.networks.classifier import CLASSIFIER_FACTORIES, ENCODER_OF_MAE

    if all(name == "cnn" for name in names):
        return
    arch = overrides.get("arch")
    if arch is not None and ENCODER_OF_MAE.get(str(arch), str(arch)) not in CLASSIFIER_FACTORIES:
        raise ValueError(f"--arch {arch!r} is no architecture the bundles build; choose one of "
                         f"{sorted(ENCODER_OF_MAE) + sorted(CLASSIFIER_FACTORIES)}")
    size = overrides.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 16):
        raise ValueError(f"--image_size must be a whole multiple of the 16-pixel patch (such as 224), got {size!r}")


#: Bundle settings the runner sets for each fold and start; a user's value would win and break the run: ``--fold 3``
#: (for ``--folds 3``) ran every fold on the same split, ``--ckpt_dir`` kept one model of all the runs.
RUNNER_SETTINGS = {
    "fold": "each fold's split is the runner's; to run fold 3 only, give --folds 3",
    "datalist_file": "each fold's split is written by the runner (give the data as the protocol's ROOT)",
    "ckpt_dir": "each run's models go under OUT/<start>/fold<k>/models; choose OUT",
    "output_dir": "each run's outputs go under OUT/<start>/fold<k>/eval; choose OUT",
    "eval_split": "the runner tests every fold on its test part",
    "init_checkpoint": "each start sets it: give --init_checkpoint to the runner, or NAME=CHECKPOINT in --methods",
}

#: The same settings as ``label-efficiency`` sets them: its layout and options are not cross-validate's (it has no
#: --folds or --methods; repeat r uses fold r).
CURVE_RUNNER_SETTINGS = {
    "fold": "repeat r uses fold r of the protocol; choose how many with --repeats",
    "datalist_file": "each run's labelled images are drawn by the runner (give the data as the protocol's ROOT)",
    "ckpt_dir": "each run's models go under OUT/n<count>/<start>/rep<r>/models; choose OUT",
    "output_dir": "each run's outputs go under OUT/n<count>/<start>/rep<r>/eval; choose OUT",
    "eval_split": "the runner tests every repeat on its fold's test part",
    "init_checkpoint": "the pretrained start uses the runner's INIT_CHECKPOINT and the random start none; give "
                       "INIT_CHECKPOINT",
}

#: Each runner's words for the settings it sets, by command name.
RUNNERS = {"cross-validate": RUNNER_SETTINGS, "label-efficiency": CURVE_RUNNER_SETTINGS}


def check_runner_settings(overrides: Mapping[str, Any], runner: str = "cross-validate") -> None:
    """Refuse a bundle setting the runner sets itself (:data:`RUNNERS`), saying what to give instead in the
    runner's own terms.

    Args:
        overrides: the bundle settings given.
        runner: ``"cross-validate"`` or ``"label-efficiency"``.

    Raises:
        ValueError: naming the setting.
    """
    settings = RUNNERS[runner]
    for key in overrides:
        if key in settings:
            raise ValueError(f"--{key} is set by the runner: {settings[key]}")


def clear_previous_summary(paths: Sequence[Path]) -> None:
    """Remove an earlier run's summary files from a results folder before the first fold trains: a rerun stopped
    midway (Ctrl-C, a crash) left the old summary describing another run's protocol and folds beside this run's
    splits, reports and models."""
    removed = [path.name for path in paths if path.is_file()]
    for path in paths:
        path.unlink(missing_ok=True)
    if removed:
        logger.warning("%s: removed the previous run's %s; this run writes its own when every fold is done",
                       paths[0].parent, ", ".join(removed))


#: The record of the settings a fold trained with, in its folder (``OUT/<start>/fold<k>``): ``--resume true``
#: compares it with the run's, as a finished fold's checkpoint is otherwise kept and tested whatever the new settings.
FOLD_RECORD = "fold_settings.json"

#: Settings a resume may change without changing what the fold computes: how it runs and is tracked, and where the
#: generated data is cached (the split's hash stands for the data).
RESUME_FREE_SETTINGS = frozenset({"resume", "num_workers", "device", "log_interval", "save_interval", "cache_dir",
                                  "tracking_uri", "experiment_name", "run_name"})


class FoldFailed(RuntimeError):
    """A fold that raised, with the start and fold named and what is kept: the CLI shows it as one line (exit code
    2 for a user's mistake inside, 1 for a fault, whose traceback it shows first). Its ``__cause__`` is the error."""


def _plain(value: Any) -> Any:
    """A setting as compared between runs: JSON's form (a tuple is a list), with yes/no words as bools
    (``--linear_probe yes`` then and ``true`` now are the same setting)."""
    value = json.loads(json.dumps(value, default=str))
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return as_flag(value, "setting")
    return value


class BundleDefaults(dict):
    """The bundle's top-level defaults: plain values at once, and an expression's value (``arch``, ``image_size``,
    ``in_channels``, ``data_seed``: ``$@init_arch...``, ``@seed``) resolved when first asked for, as a run without
    the setting would resolve it: ``--image_size 224`` given once and left out the next time is the same setting.
    Only the settings a resume compares are resolved (the datalist's expressions are never)."""

    def __init__(self, train_yaml: Path) -> None:
        from monai.bundle import ConfigParser

        self._parser = ConfigParser()
        self._parser.read_config(str(train_yaml))
        config = self._parser.get() or {}
        super().__init__({k: _plain(v) for k, v in config.items() if not isinstance(v, (dict, list))
                          and not (isinstance(v, str) and v.startswith(("$", "@", "%")))})
        self._expressions = {k for k, v in config.items() if isinstance(v, str) and v.startswith(("$", "@"))}

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self and key in self._expressions:
            try:
                self[key] = _plain(self._parser.get_parsed_content(key))
            except Exception:  # noqa: BLE001 - any failure of an expression that needs a run's other settings:
                # the setting is left to the missing-default marker
                self._expressions.discard(key)
        return super().get(key, default)


def bundle_defaults(bundle: str | os.PathLike | None) -> BundleDefaults:
    """The bundle's ``train.yaml`` defaults (:class:`BundleDefaults`): a setting left out in one run and given as
    its default in another is the same setting."""
    return BundleDefaults(Path(bundle or locate_bundle_root("usf_mae_classify")) / "configs" / "train.yaml")


def fold_record(overrides: Mapping[str, Any], split_sha256: str | None,
                checkpoint_sha256: str | None) -> dict[str, Any]:
    """What :data:`FOLD_RECORD` holds: the fold's bundle settings (all but :data:`RESUME_FREE_SETTINGS`), the
    SHA-256 of its split and of its start checkpoint (None for a start without one)."""
    settings = {str(k): _plain(v) for k, v in overrides.items() if k not in RESUME_FREE_SETTINGS}
    return {"settings": settings, "split_sha256": split_sha256, "init_checkpoint_sha256": checkpoint_sha256}


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:12]


def has_progress(fold_dir: Path) -> bool:
    """Whether a fold's folder holds anything a resume continues or tests: a best model or a trainer checkpoint."""
    models = fold_dir / "models"
    return (models / "model.pt").is_file() or (models.is_dir() and any(
        CHECKPOINT_PATTERN.match(p.name) for p in models.iterdir()))


def check_fold_resume(fold_dir: Path, fold: str, record: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Refuse ``--resume true`` onto a fold trained otherwise: its kept best model (a finished fold trains nothing
    more) would be tested and reported as this run's, under this run's start name and settings.

    Compared with the fold's :data:`FOLD_RECORD` (settings, split and start checkpoint hashes); a folder written
    before that record existed is compared with what its ``model.pt`` records (split hash, linear probe or not). A
    folder with nothing to resume passes.

    Args:
        fold_dir: ``OUT/<start>/fold<k>``.
        fold: ``"random fold 1"``, for the message.
        record: this run's :func:`fold_record`.
        defaults: :func:`bundle_defaults`, standing for a setting one run left out.

    Raises:
        ValueError: one line naming the fold, the setting, its value then and now, and what to do.
    """
    if not has_progress(fold_dir):
        return
    again = "rerun without --resume true (or into another output folder)"
    then = _recorded_fold(fold_dir)
    if then.get("split_sha256") and record["split_sha256"] and then["split_sha256"] != record["split_sha256"]:
        raise ValueError(f"{fold}'s split changed since its checkpoint (sha256 {_short(then['split_sha256'])} then, "
                         f"{_short(record['split_sha256'])} now: another --data_seed, other images or labels); "
                         f"{again}")
    if "init_checkpoint_sha256" in then and then["init_checkpoint_sha256"] != record["init_checkpoint_sha256"]:
        was, now = then["settings"].get("init_checkpoint"), record["settings"].get("init_checkpoint")
        raise ValueError(f"{fold} was trained from start checkpoint {was!r} (sha256 "
                         f"{_short(then['init_checkpoint_sha256'])}) and this run starts from {now!r} (sha256 "
                         f"{_short(record['init_checkpoint_sha256'])}); {again}")
    ours, theirs = record["settings"], then.get("settings", {})
    # an older folder's model.pt records a few settings only: the others cannot be compared
    for key in sorted(set(theirs) if then.get("partial") else set(theirs) | set(ours)):
        if key == "init_checkpoint" and "init_checkpoint_sha256" in then:
            continue  # compared by content above: the same file moved is the same start
        missing = "(the bundle's default)"
        was = theirs.get(key, defaults.get(key, missing))
        now = ours.get(key, defaults.get(key, missing))
        if was != now:
            raise ValueError(f"{fold} was trained with --{key} {was!r} and this run has --{key} {now!r}; {again}")


def _recorded_fold(fold_dir: Path) -> dict[str, Any]:
    """The fold's :data:`FOLD_RECORD`, or for a folder without one what its ``models/model.pt`` records: the split's
    SHA-256 (``datalist_sha256``) and whether it is a linear probe (``{}`` where it records neither)."""
    path = fold_dir / FOLD_RECORD
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path} cannot be read ({e}); rerun without --resume true") from None
    from monai_ext.networks.checkpoints import CheckpointError, read_checkpoint

    try:
        content = read_checkpoint(fold_dir / "models" / "model.pt")
    except (OSError, CheckpointError, RuntimeError):  # RuntimeError: torch's for a damaged archive
        return {}  # nothing readable to compare: the bundle's resume checks its trainer checkpoints itself
    arch = content.get("arch") if isinstance(content, Mapping) else None
    if not isinstance(arch, Mapping):
        return {}
    recorded: dict[str, Any] = {"split_sha256": (arch.get("config") or {}).get("datalist_sha256"), "partial": True}
    if "linear_probe" in (arch.get("arch_args") or {}):
        recorded["settings"] = {"linear_probe": bool(arch["arch_args"]["linear_probe"])}
    return recorded


def split_sha256(split: Mapping[str, Any], class_names: Sequence[str], task: str) -> str | None:
    """The SHA-256 of the datalist :func:`write_split` writes for ``split``, without touching the fold's file: a
    refused resume leaves the split its checkpoint trained on in place. None where nothing is written (tests)."""
    import tempfile

    from monai_ext.io.checkpoints import sha256_of

    with tempfile.TemporaryDirectory() as tmp:
        written = Path(write_split(split, class_names, Path(tmp) / "split.json", task))
        return sha256_of(written) if written.is_file() else None


def start_sha256(checkpoint: str | None, known: dict[str, str | None]) -> str | None:
    """The SHA-256 of a start's checkpoint file (None without one), hashed once per run."""
    from monai_ext.io.checkpoints import sha256_of

    if not checkpoint:
        return None
    if checkpoint not in known:
        path = Path(checkpoint).expanduser()
        known[checkpoint] = sha256_of(path) if path.is_file() else None
    return known[checkpoint]


def folds_done_text(done: Sequence[str], none: str = "no fold finished in this run") -> str:
    """``"done and kept: random fold 0, ours fold 0"``, or ``none`` where nothing finished."""
    return f"done and kept: {', '.join(done)}" if done else none


def unreadable_text(report: Mapping[str, Any], fold: int | str) -> str:
    """``"1 test image unreadable in fold 1"`` for a test report that left images out (``""`` where none)."""
    count = len(report.get("skipped") or [])
    return f"{count} test image{'s' if count != 1 else ''} unreadable in fold {fold}" if count else ""


def tested_image_counts(results: Mapping[str, list[dict[str, Any]]],
                      folds: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Per start, each fold's tested images (``n``) and those left out as unreadable (``skipped``), for
    ``cv_summary.json``: a fold's scores are then of fewer images than its test part holds."""
    return {name: [{"fold": k, "n": r.get("n"), "skipped": len(r.get("skipped") or [])}
                   for k, r in zip(folds, reports)] for name, reports in results.items()}


def unreadable_notes(results: Mapping[str, list[dict[str, Any]]], folds: Sequence[int]) -> str:
    """Lines under the table naming, per start, the folds whose test images were left out as unreadable."""
    lines = [f"- {name}: {'; '.join(notes)} (left out of its scores)"
             for name, reports in results.items()
             if (notes := [t for k, r in zip(folds, reports) if (t := unreadable_text(r, k))])]
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def run_fold(split_file: Path, out: Path, overrides: Mapping[str, Any], bundle: str | os.PathLike | None = None,
             tracking: str | None = None) -> dict[str, Any]:
    """Fine-tune on one split (tracked when ``tracking`` names MONAI tracking settings), then evaluate the best
    checkpoint on its test part. Returns the test report.

    ``bundle`` defaults to the ``usf_mae_classify`` bundle that the bundle's own ``bundle_root`` finds (the
    checkout's, or the one installed with the package), so the configs and the bundle root agree."""
    from monai.bundle import run

    configs = Path(bundle or locate_bundle_root("usf_mae_classify")) / "configs"
    common = {
        "meta_file": str(configs / "metadata.json"),
        "logging_file": str(configs / "logging.conf"),
        "datalist_file": str(split_file),
        "ckpt_dir": str(out / "models"),
        "output_dir": str(out / "eval"),
        **overrides,
    }
    # a results folder may be reused: an older run's reports and best model must not be read as this one's (a kNN
    # report of a linear-probe run would join a fine-tuning run's results; a run that validated no epoch left the
    # older model.pt to be tested as its own)
    # (--resume true continues a fold from its checkpoints: its best model so far is the one to keep)
    resuming = as_flag(overrides.get("resume", False), "resume")
    stale = [out / "eval" / "probe_report.json", out / "eval" / "test_report.json"]
    for path in stale + ([] if resuming else [out / "models" / "model.pt"]):
        path.unlink(missing_ok=True)
    run(config_file=str(configs / "train.yaml"), tracking=tracking, **common)
    run(config_file=[str(configs / "train.yaml"), str(configs / "evaluate.yaml")], eval_split="test", **common)
    # a linear-probe run also tuned a kNN on the same frozen features: its test metrics join the report
    return {**json.loads((out / "eval" / "test_report.json").read_text()), **knn_test_metrics(out / "eval")}


def fold_score_text(report: Mapping[str, Any], metric: str) -> str:
    """A fold's test ``metric`` for its console line, as the summary counts it: ``n/a (class 'malignant' absent)``
    for a class average of a test part without a class (:func:`~monai_ext.apps.comparison.fold_value`; its report
    holds 0.0 or an average over the other classes, which the summary calls undefined), ``undefined`` where the
    report has no value (Dice of a test part without lesions), else 4 decimals."""
    if report[metric] is not None and fold_value(report, metric) is None:
        absent = classes_missing(report)
        return f"n/a (class{'es' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} absent)"
    return "undefined" if report[metric] is None else f"{report[metric]:.4f}"


def summarise(results: Mapping[str, list[dict[str, Any]]],
              metrics: Sequence[str] = SUMMARY_METRICS) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample standard deviation of each summary metric per method, over the folds that define it
    (:func:`~monai_ext.apps.comparison.fold_statistics`): a one-class test fold defines no AUC, and a test fold
    without a class no macro-F1, balanced accuracy or AUC (:func:`~monai_ext.apps.comparison.fold_value`); the table
    then says over how many folds, as ``(3 of 5 folds)``.

    ``mean_hd95`` also keeps, per fold, ``hd95_undefined`` (the test report's (image, class) pairs without a
    distance: a class missing from the prediction or the truth) and ``pairs`` (all of them, N x (K - 1)): a start
    that misses lesions has its HD95 averaged over fewer, easier images, and looks better by it."""
    summary = {method: {metric: fold_statistics([fold_value(r, metric) for r in reports]) for metric in metrics}
               for method, reports in results.items()}
    if "mean_hd95" in metrics:
        for method, reports in results.items():
            summary[method]["mean_hd95"]["hd95_undefined"] = [r.get("hd95_undefined") for r in reports]
            summary[method]["mean_hd95"]["pairs"] = [r["n"] * (len(r["class_names"]) - 1)
                                                     if "n" in r and "class_names" in r else None for r in reports]
    return summary


def undefined_note(stats: Mapping[str, Any]) -> str:
    """`` (3/15 undefined)``: the (image, class) pairs without a distance over all folds, for an HD95 cell (nothing
    where the folds' reports do not count them)."""
    undefined, pairs = stats.get("hd95_undefined"), stats.get("pairs")
    if not undefined or not pairs or None in undefined or None in pairs:
        return ""
    return f" ({sum(undefined)}/{sum(pairs)} undefined)"


def markdown_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]], title: str,
                   metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """The paper's format: percent (distances as they are), mean +/- std over folds; HD95 with its undefined pairs
    (:func:`undefined_note`), as its means of two starts may cover different images."""
    lines = [f"### {title}", "", "| start | " + " | ".join(metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for method, values in summary.items():
        cells = [statistic_text(values[k], 100 if k in PERCENT_METRICS else 1) + undefined_note(values[k])
                 for k in metrics]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def synthetic_protocol(cache_dir: str | os.PathLike, per_class: int = 60, max_train: int = 100,
                       multiclass: bool = False, seed: int = 0) -> Protocol:
    """The synthetic lesion benchmark as a 5-fold protocol with at most ``max_train`` labelled training images."""
    check_generated_size(per_class)
    folder = synthetic_lesion_dataset(cache_dir, per_class=per_class, multiclass=multiclass, seed=seed)
    return folder_protocol(folder, folds=5, val_fraction=0.2, seed=seed, max_train=max_train)


def check_folds(protocol: Protocol, folds: Sequence[int] | None) -> list[int]:
    """The fold indices to run.

    Args:
        protocol: the protocol whose folds are meant.
        folds: indices, or None for all of them.

    Returns:
        The indices in the given order.

    Raises:
        ValueError: an index outside the protocol's folds, an index named twice, or an empty list.
    """
    count = len(protocol.splits)
    if folds is None:
        return list(range(count))
    folds = list(folds)
    outside = [k for k in folds if not 0 <= k < count]
    if outside or not folds:
        raise ValueError(f"folds {folds!r}: protocol {protocol.name!r} has folds 0..{count - 1}")
    if len(set(folds)) != len(folds):
        raise ValueError(f"folds {folds!r} name a fold twice")
    return folds


def cross_validate(
    protocol: Protocol,
    out_dir: str | os.PathLike,
    methods: Sequence[str] = ("pretrained", "random", "cnn"),
    init_checkpoint: str | None = None,
    folds: Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    tracking: str | None = None,
    tracking_uri: str | None = None,
    task: str = "classify",
) -> dict[str, Any]:
    """Run every (method, fold) and write ``cv_summary.json`` and ``cv_table.md`` into ``out_dir``.

    Args:
        protocol: from :func:`monai_ext.data.downstream.load_protocol` or :func:`synthetic_protocol`.
        out_dir: results folder (one sub-folder per method and fold).
        methods: starting points: pretrained, random, cnn, or ``NAME=CHECKPOINT`` for a start from that file
            reported as NAME (several may be given to compare checkpoints on the same folds).
        init_checkpoint: weights for "pretrained".
        folds: which folds (default: all); checked before anything runs (:func:`check_folds`).
        overrides: bundle overrides for every run (arch, image_size, epochs, ...).
        tracking: MONAI tracking settings (e.g. the bundle's ``mlflow_tracking.yaml``): a parent MLflow run with one
            nested run per (method, fold), which also gets the fold's test scores (``test_<metric>``) and
            ``test_report.json``, and the mean/std summary on the parent (:class:`~monai_ext.apps.cv_tracking.ParentRun`; ``resume`` in
            ``overrides`` reopens the parent run recorded in ``out_dir``).
        tracking_uri: MLflow server or store for ``tracking`` (default MLFLOW_TRACKING_URI, else SQLite in out_dir).

    Returns:
        ``{"protocol", "class_names", "summary", "table", "folds"}``; with a random start also
        ``"differences_from_random"`` (``{start: paired differences}`` for every start from weights) and, for the
        "pretrained" start, the same as ``"paired_differences"`` (for ``task="segment"``: of ``mean_dice``,
        ``mean_iou`` and ``mean_hd95``, HD95 in pixels).

    ``task="segment"`` (the protocols of :data:`SEGMENTATION_PROTOCOL_NAMES`, see :func:`task_of`) runs the
    ``usf_mae_segment`` bundle and reports Dice, IoU and HD95 instead of the classification metrics.
    """
    if task not in ("classify", "segment"):
        raise ValueError(f"task must be 'classify' or 'segment', got {task!r}")
    metrics = SEGMENTATION_METRICS if task == "segment" else SUMMARY_METRICS
    key = metrics[0]
    bundle = locate_bundle_root("usf_mae_segment") if task == "segment" else None
    out = Path(out_dir)
    folds = check_folds(protocol, folds)
    check_run_inputs(methods, init_checkpoint, overrides, task, tracking)
    warn_of_starts_trained_on_test_images(methods, init_checkpoint, protocol, folds)
    overrides = shared_architecture(init_checkpoint, overrides)
    split_task = "segmentation" if task == "segment" else "classification"
    for k in folds:  # a missing file or a repeat in fold 2 is refused before fold 0 trains
        check_split(protocol.splits[k], protocol.class_names, out / "splits" / f"fold{k}.json", split_task)
    warn_of_several_frames(protocol.splits[folds[0]], out / "splits" / f"fold{folds[0]}.json")  # once: folds share images
    resume = as_flag((overrides or {}).get("resume", False), "resume")
    # each (start, fold)'s record, checked on resume before anything is touched or trains: a finished fold's kept
    # model would otherwise be tested as this run's whatever its start, settings or split were
    records: dict[tuple[str, int], dict[str, Any]] = {}
    hashes: dict[str, str | None] = {}
    defaults = bundle_defaults(bundle) if resume else {}
    for k in folds:
        split_hash = split_sha256(protocol.splits[k], protocol.class_names, split_task)
        for method in methods:
            name = method_name(method)
            settings = {**(overrides or {}), **method_overrides(method, init_checkpoint, task)}
            records[name, k] = fold_record(settings, split_hash, start_sha256(settings.get("init_checkpoint"), hashes))
            if resume:
                check_fold_resume(out / name / f"fold{k}", f"{name} fold {k}", records[name, k], defaults)
    clear_previous_summary([out / "cv_summary.json", out / "cv_table.md"])
    results: dict[str, list[dict[str, Any]]] = {method_name(m): [] for m in methods}
    parent = ParentRun(protocol.name, out, tracking_uri, resume=resume) if tracking else None
    done: list[str] = []  # the (start, fold)s this run finished, named when a later one fails
    current = ""
    try:
        for k in folds:
            split_file = write_split(protocol.splits[k], protocol.class_names, out / "splits" / f"fold{k}.json",
                                     split_task)
            for method in methods:
                name = method_name(method)
                current = f"{name} fold {k}"
                # a server lost during an earlier fold: this one trains untracked rather than ending the whole run
                # (its handler would refuse the unreachable server before training)
                tracked = parent is not None and parent.reachable()
                fold_tracking = {"tracking_uri": parent.uri, "experiment_name": parent.experiment,
                                 "run_name": f"{name}_fold{k}"} if tracked else {}
                run_overrides = {**(overrides or {}), **method_overrides(method, init_checkpoint, task),
                                 **fold_tracking}
                fold_dir = out / name / f"fold{k}"
                # before training: a run stopped midway leaves checkpoints that a resume must check against it
                fold_dir.mkdir(parents=True, exist_ok=True)
                if not resume:  # an earlier run's trainer checkpoints there are not this record's: a resume of a
                    # run stopped before its trainer listed them would have continued them under this record
                    record_earlier_checkpoints(fold_dir / "models")
                atomic_write_bytes(fold_dir / FOLD_RECORD, json.dumps(records[name, k], indent=1).encode())
                try:
                    report = run_fold(split_file, fold_dir, run_overrides, bundle,
                                      tracking=tracking if tracked else None)
                except Exception as e:
                    from monai_ext.io.errors import one_line, root_cause, user_error_in

                    user = user_error_in(e)
                    reason = one_line(str(user)) if user is not None else root_cause(e)
                    raise FoldFailed(f"{current} failed: {reason}; {folds_done_text(done)}; once the cause is "
                                     "dealt with, rerun with --resume true to continue") from e
                if tracked:
                    parent.log_fold_test(f"{name}_fold{k}", report, fold_dir / "eval" / "test_report.json")
                score = fold_score_text(report, key)
                unreadable = unreadable_text(report, k)
                logger.info("%s fold %d: test %s %s", name, k, key, score)
                print(f"[cross-validation] {protocol.name} {protocol.fold_name(k)} {name}: test {key} {score}"
                      + (f" ({unreadable}, left out)" if unreadable else ""), flush=True)
                results[name].append(report)
                done.append(current)
    except StopSignal as stop:  # SIGTERM of a queue's time limit: say what is kept and how to go on
        where = f" in {current}" if current else ""
        print(f"cross-validation stopped by {stop.signal_name}{where} ({protocol.name}); {folds_done_text(done)}; "
              "rerun the same command with --resume true to continue", file=sys.stderr, flush=True)
        if parent:
            parent.fail(stopped=True)
        raise
    except BaseException as error:
        if parent:  # closed, so that later runs in this process do not attach to it
            parent.fail(stopped=isinstance(error, KeyboardInterrupt))
        raise
    summary = summarise(results, metrics)
    add_knn_summary(summary, results)
    unit = "%; HD95 in pixels of each image as read" if task == "segment" else "%"
    title = f"{protocol.name}: test metrics over {len(folds)} fold{'s' if len(folds) != 1 else ''} (mean ± sample std, {unit})"
    # every start from weights (pretrained, NAME=CHECKPOINT) is compared with the random one on the same folds
    weighted = [method_name(m) for m in methods if m == "pretrained" or named_checkpoint(m)]
    notes = unreadable_notes(results, folds)
    table = markdown_table(summary, title, metrics) + (
        f"\nTest images left out as unreadable:{notes}" if notes else "") + comparison_table(summary, weighted)
    record = {"protocol": protocol.name, "class_names": protocol.class_names, "folds": folds, "summary": summary,
              "table": table, "test_images": tested_image_counts(results, folds)}
    if "random" in summary and weighted:
        record["differences_from_random"] = {name: paired_differences(summary, name, "random") for name in weighted}
        if "pretrained" in weighted:
            record["paired_differences"] = record["differences_from_random"]["pretrained"]
    atomic_write_bytes(out / "cv_summary.json", json.dumps(json_tree(record), indent=1, allow_nan=False).encode())
    atomic_write_bytes(out / "cv_table.md", table.encode())
    if parent:
        parent.finish(summary, [out / "cv_summary.json", out / "cv_table.md"])
    return record


#: Protocols generated into the cache folder rather than read from ``--root``.
GENERATED_PROTOCOLS = ("synthetic", "subtle", "synthetic-seg")


def check_protocol_name(name: str) -> None:
    """Refuse an unknown protocol name before anything else is checked: a misspelt segmentation protocol would
    otherwise be taken for a classification one and answered about the wrong bundle's settings.

    Raises:
        ValueError: quoting the name and listing the known ones.
    """
    if name not in GENERATED_PROTOCOLS and name not in PROTOCOLS and name not in SEGMENTATION_PROTOCOLS:
        known = sorted({*GENERATED_PROTOCOLS, *PROTOCOLS, *SEGMENTATION_PROTOCOLS})
        raise ValueError(f"unknown protocol {name!r}; choose one of {known}")


#: The options that size a generated benchmark, and the protocols that generate with them.
GENERATOR_OPTIONS = {"per_class": ("synthetic", "subtle"), "synthetic_images": ("synthetic-seg",)}


def refuse_generator_options(protocol: str, **given: object) -> None:
    """Refuse an option that sizes a generated benchmark for a protocol that generates nothing with it: it was
    dropped in silence, and the run went on with the data as it is.

    Raises:
        ValueError: naming the option, the protocols it sizes and the protocol given.
    """
    for name, value in given.items():
        if value is not None and protocol not in GENERATOR_OPTIONS[name]:
            raise ValueError(f"--{name} sizes the generated {' and '.join(GENERATOR_OPTIONS[name])} benchmark; "
                             f"protocol {protocol!r} does not take it")


def dataset_options(name: str, num_folds: int | None = None, seed: int = 0,
                    max_train: int | None = None) -> dict[str, Any]:
    """Keyword arguments for a dataset protocol read from ``--root``: ``seed`` (its folds and validation parts) where
    it takes one, ``folds`` where it takes a fold count and ``num_folds`` is given, and ``max_train`` (a cap on each
    run's labelled images) where it takes one and one is given.

    Raises:
        ValueError: ``num_folds`` for a protocol with fixed splits (MMOTU's, GIST514-DB's) or a generated one;
            ``max_train`` for a protocol without a cap (it was dropped in silence, and every image trained on).
    """
    check_protocol_name(name)
    loader = PROTOCOLS.get(name) or SEGMENTATION_PROTOCOLS.get(name)
    params = inspect.signature(loader).parameters if loader is not None else {}
    options: dict[str, Any] = {"seed": seed} if "seed" in params else {}
    if num_folds is not None:
        if "folds" not in params:
            raise ValueError(f"protocol {name!r} has fixed splits: --num_folds does not apply to it")
        options["folds"] = num_folds
    if max_train is not None:
        if "max_train" not in params:
            capped = sorted(n for n, f in {**PROTOCOLS, **SEGMENTATION_PROTOCOLS}.items()
                            if "max_train" in inspect.signature(f).parameters)
            raise ValueError(f"protocol {name!r} takes no --max_train (the protocols that do: "
                             f"{', '.join([*capped, *GENERATED_PROTOCOLS])})")
        options["max_train"] = max_train
    return options


def protocol_by_name(name: str, root: str | os.PathLike | None, cache_dir: str | os.PathLike, **kwargs: Any) -> Protocol:
    """``synthetic`` / ``synthetic-seg`` (generated into ``cache_dir``) or a dataset protocol read from ``root``."""
    check_protocol_name(name)  # before --root, so that a misspelt name is not answered with "needs --root"
    if name in GENERATED_PROTOCOLS and root is not None:  # it would benchmark generated images, not the user's
        raise ValueError(f"protocol {name!r} is generated into --cache_dir and reads no --root (got {str(root)!r}); "
                         "for your data give its protocol (busbra, mmotu, gist514, folder, csv, busbra-seg, ...)")
    if name == "synthetic":
        return synthetic_protocol(cache_dir, **kwargs)
    if name == "subtle":
        return subtle_protocol(cache_dir, **kwargs)
    if name == "synthetic-seg":
        return synthetic_segmentation_protocol(cache_dir, **kwargs)
    if root is None:
        raise ValueError(f"protocol {name!r} needs --root, the dataset folder as distributed")
    if name in SEGMENTATION_PROTOCOLS:
        return load_segmentation_protocol(name, root, **kwargs)
    return load_protocol(name, root, **kwargs)
