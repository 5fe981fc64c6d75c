"""Bundle settings as ``monai.bundle run`` hands them over, checked with MONAI's ConfigParser (no training, seconds).

The command line passes ``--resume false`` as the text 'false'; every yes/no setting must read it as no. A
``--ckpt_path`` that is not a file is an error; evaluate follows the checkpoint's architecture record as inference
does; a checkpoint of another kind is refused by name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
import yaml
from monai.bundle import ConfigParser
from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

from monai_ext.networks import build_classifier, build_mae
from monai_ext.networks.checkpoints import save_model_checkpoint
from monai_ext.networks.segmentation import build_segmenter
from tests.bundles.helpers import REPO, readme_bundle_commands

TINY = "mae_vit_tiny_patch16_dec128d2b"
BUNDLES = ("usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment")
#: The bundles that fine-tune on a datalist or a fold of their synthetic default.
FINETUNE_BUNDLES = ("usf_mae_classify", "usf_mae_segment")
#: Every yes/no setting a user may type on the command line, per bundle.
FLAGS = {
    "usf_mae_pretrain": {"norm_pix_loss", "resume", "compile", "deannotate"},
    "usf_mae_classify": {"synthetic_multiclass", "linear_probe", "resume", "compile", "class_weighting",
                         "balanced_sampler", "heatmaps", "allow_random_weights"},
    "usf_mae_segment": {"resume", "compile", "overlays"},
}


def configs(bundle: str) -> Path:
    return REPO / "bundles" / bundle / "configs"


def strings(node) -> list[str]:
    """Every string in a parsed YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_yes_no_setting_is_read_through_as_flag(bundle: str) -> None:
    """A top-level true/false id read any other way (``if @resume``, ``resume: "@resume"``) takes 'false' as yes."""
    texts, declared = [], set()
    for path in sorted(configs(bundle).glob("*.yaml")):
        content = yaml.safe_load(path.read_text())
        declared |= {key for key, value in content.items() if isinstance(value, bool)}
        texts += strings(content)
    assert declared <= FLAGS[bundle], f"new yes/no settings {declared - FLAGS[bundle]}: add them to FLAGS"
    for flag in FLAGS[bundle]:
        uses = [t for t in texts if re.search(rf"@{flag}\b(?![#\w])", t)]
        assert uses, f"{flag} is never read"
        wrong = [t for t in uses if len(re.findall(rf"@{flag}\b(?![#\w])", t)) != t.count(f"as_flag(@{flag}, '{flag}')")]
        assert not wrong, f"{bundle}: {flag} read without as_flag in {wrong}"


#: Arguments of MONAI's bundle commands (monai.bundle.scripts) that are not config ids.
COMMAND_ARGS = {"config_file", "meta_file", "logging_file", "tracking", "args_file", "filepath", "ckpt_file",
                "key_in_ckpt", "use_trace", "input_shape"}


def _command_settings(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """A command's bare words and its ``--key value`` (or ``--key=value``) settings."""
    words, given, args = [], {}, list(args)
    while args:
        word = args.pop(0)
        if not word.startswith("--"):
            words.append(word)
            continue
        key, equals, value = word[2:].partition("=")
        given[key] = value if equals else args.pop(0)
    return words, given


def _has_setting(parser: ConfigParser, key: str) -> bool:
    """An id of the config, or a new keyword of one of its components (``--checkpointer#n_saved 5``)."""
    parent = key.rpartition("#")[0]
    return key in parser or (bool(parent) and parent in parser and isinstance(parser[parent], dict)
                             and "_target_" in parser[parent])


@pytest.mark.parametrize("bundle", BUNDLES)
def test_readme_bundle_commands_give_only_settings_their_configs_have(bundle: str) -> None:
    """Every documented ``monai.bundle`` command runs as written: its words after the verb are the network id (for
    ckpt_export and verify_net_in_out) and ``--id value`` pairs naming ids of the configs it reads or of its
    ``--tracking`` settings. The segment README's ``[--tracking_uri http://127.0.0.1:5000]`` (an optional part in
    brackets) stopped the copied command: ``run ID '[--tracking_uri' doesn't exist in the config file``."""
    commands = readme_bundle_commands(bundle)
    assert {verb for verb, *_ in commands} >= {"run", "verify_metadata", "verify_net_in_out"}
    for verb, *args in commands:
        words, given = _command_settings(args)
        assert words == (["network_def"] if verb in ("ckpt_export", "verify_net_in_out") else []), (verb, words)
        files = given.get("config_file", "[]")
        files = ast.literal_eval(files) if files.startswith("[") else [files]
        parser = ConfigParser()
        parser.read_config([str(REPO / f) for f in files])
        tracking = given.get("tracking")
        if tracking:  # MONAI adds the settings file's ids (or its stock MLflow settings') to the config
            settings = DEFAULT_MLFLOW_SETTINGS if tracking == "mlflow" else yaml.safe_load((REPO / tracking).read_text())
            parser.update({key: value for key, value in settings["configs"].items() if key not in parser})
        unknown = [key for key in given
                   if key not in COMMAND_ARGS and not key.startswith("_meta_#") and not _has_setting(parser, key)]
        assert not unknown, f"{bundle} README: {verb} {' '.join(args)} gives settings no config has: {unknown}"


def parser_for(bundle: str, files: list[str], tmp_path: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(configs(bundle) / f) for f in files])
    # cache_dir too: generated data went into the checkout's bundles/<bundle>/cache, and later runs reused it
    parser.update({"bundle_root": str(REPO / "bundles" / bundle), "ckpt_dir": str(tmp_path / "models"),
                   "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "arch": TINY,
                   "image_size": 64, **overrides})
    return parser


# (bundle, config files, the setting, the id holding its effect, the effect of 'false', the effect of 'true')
EFFECTS = [
    ("usf_mae_pretrain", ["train.yaml"], "resume", "checkpointer#resume", False, True),
    ("usf_mae_pretrain", ["train.yaml"], "compile", "train#trainer#compile", False, True),
    ("usf_mae_pretrain", ["train.yaml"], "norm_pix_loss", "network_def#norm_pix_loss", False, True),
    ("usf_mae_pretrain", ["train.yaml"], "deannotate", "$len(@deannotate_transforms)", 0, 1),
    ("usf_mae_pretrain", ["inference.yaml"], "deannotate", "$len(@deannotate_transforms)", 0, 1),
    ("usf_mae_pretrain", ["inference.yaml"], "norm_pix_loss", "network_def#norm_pix_loss", False, True),
    ("usf_mae_classify", ["train.yaml"], "resume", "checkpointer#resume", False, True),
    ("usf_mae_classify", ["train.yaml"], "linear_probe", "probe_mode", False, True),
    ("usf_mae_classify", ["inference.yaml"], "heatmaps", "$@heatmap_dir is None", True, False),
    ("usf_mae_classify", ["inference.yaml"], "linear_probe", "network_def#linear_probe", False, True),
    ("usf_mae_segment", ["train.yaml"], "resume", "checkpointer#resume", False, True),
    ("usf_mae_segment", ["inference.yaml"], "overlays", "draw_overlays", False, True),
]


@pytest.mark.parametrize("bundle,files,flag,effect,when_false,when_true", EFFECTS)
def test_false_typed_on_the_command_line_switches_the_setting_off(bundle, files, flag, effect, when_false, when_true,
                                                                  tmp_path) -> None:
    for typed, expected in (("false", when_false), ("False", when_false), ("no", when_false), ("true", when_true)):
        parser = parser_for(bundle, files, tmp_path, **{flag: typed})
        if effect.startswith("$"):
            parser["probe_effect"] = effect
            effect_id = "probe_effect"
        else:
            effect_id = effect
        assert parser.get_parsed_content(effect_id) == expected, (flag, typed)


@pytest.mark.parametrize("bundle, expected", [
    ("usf_mae_pretrain", {"dataset_dir", "num_synthetic", "val_fraction", "data_seed"}),
    ("usf_mae_classify", {"datalist_file", "fold", "data_seed", "synthetic_per_class", "synthetic_multiclass",
                          "class_names", "datalist_sha256"}),
    ("usf_mae_segment", {"datalist_file", "fold", "data_seed", "synthetic_images", "max_train", "class_names",
                         "mask_encoding", "datalist_sha256"}),
])
def test_a_resume_may_not_change_the_data_split_or_labels(bundle, expected, tmp_path) -> None:
    """The data, split and label settings the checkpoint records are fixed on resume; seed (which draws the split
    only through data_seed) and the hyper-parameters are not."""
    record = parser_for(bundle, ["train.yaml"], tmp_path).get_parsed_content("model_record")
    assert set(record.fixed_settings) == expected


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
def test_a_run_on_a_datalist_resumes_a_checkpoint_that_recorded_its_fold(bundle, tmp_path) -> None:
    """Checkpoints saved before the fold of a datalist run was recorded as null recorded --fold 0: their resume was
    refused as a change of split. With a datalist, the datalist is the split; the fold is no fixed setting."""
    fold0, _ = _fold_datalists(tmp_path, bundle)
    record = parser_for(bundle, ["train.yaml"], tmp_path, datalist_file=str(fold0)).get_parsed_content("model_record")
    older = record.state_dict()
    older["config"] = {**older["config"], "fold": 0}
    record.load_state_dict(older)
    assert "fold" not in record.fixed_settings and "datalist_file" in record.fixed_settings



@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
def test_a_datalist_rewritten_with_another_split_under_its_name_is_not_resumed(bundle, tmp_path) -> None:
    """The resume compared the datalist's path only: one rewritten in place with another split (by hand, or by a
    runner that writes its folds anew under the same names) resumed, validating on images the checkpoint trained on.
    The same split written again resumes."""
    from monai_ext.io.checkpoints import CheckpointError

    fold0, fold1 = _fold_datalists(tmp_path, bundle)
    saved = parser_for(bundle, ["train.yaml"], tmp_path, datalist_file=str(fold0)).get_parsed_content("model_record")
    state = saved.state_dict()
    rewritten = fold0.read_bytes()
    fold0.write_bytes(rewritten)  # the same split again: resumes
    parser_for(bundle, ["train.yaml"], tmp_path, datalist_file=str(fold0)).get_parsed_content(
        "model_record").load_state_dict(state)
    fold0.write_bytes(fold1.read_bytes())
    record = parser_for(bundle, ["train.yaml"], tmp_path, datalist_file=str(fold0)).get_parsed_content("model_record")
    with pytest.raises(CheckpointError, match="datalist_sha256"):
        record.load_state_dict(state)


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
def test_the_readme_names_every_setting_a_resume_refuses_to_change(bundle, tmp_path) -> None:
    """The README lists what ``--resume true`` refuses to change: the datalist's content (``datalist_sha256``), fixed
    since a datalist rewritten under its name with another split resumed, was missing, so a resume refused after a
    datalist was edited (or written again with other bytes) named a setting the README never mentioned."""
    fold0, _ = _fold_datalists(tmp_path, bundle)
    fixed = set()
    for overrides in ({}, {"datalist_file": str(fold0)}):  # synthetic data and a datalist fix different settings
        record = parser_for(bundle, ["train.yaml"], tmp_path, **overrides).get_parsed_content("model_record")
        fixed |= set(record.fixed_settings)
    text = " ".join((REPO / "bundles" / bundle / "docs" / "README.md").read_text().split())
    start = text.index("it refuses, in one line naming each setting")
    listed = text[start:text.index(")", start)]
    assert not [k for k in sorted(fixed) if f"`--{k}`" not in listed and f"`{k}`" not in listed], listed


def test_a_misspelt_flag_is_an_error_naming_it(tmp_path) -> None:
    parser = parser_for("usf_mae_pretrain", ["train.yaml"], tmp_path, resume="flase")
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("checkpointer#resume")
    assert "resume must be true or false (or yes/no, 1/0), got 'flase'" in repr(error.value.__cause__)


# ---------------------------------------------------------------------------------------------------- checkpoints
def cause(error: BaseException) -> str:
    """The message at the bottom of MONAI's 'Failed to evaluate' chain."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("bundle", ["usf_mae_pretrain", "usf_mae_classify"])
def test_inference_with_a_missing_ckpt_path_is_an_error_not_random_weights(bundle, tmp_path) -> None:
    """The bundle's own models/model.pt may be missing (verify_net_in_out, ckpt_export); a --ckpt_path, or a
    --ckpt_dir other than the bundle's models folder, must hold the file."""
    parser = parser_for(bundle, ["inference.yaml"], tmp_path, bundle_root=str(tmp_path))
    parser.get_parsed_content("network_def")  # the default file is absent: defaults, random weights
    assert parser.get_parsed_content("weights") == "random"
    for given in (tmp_path / "nope.pt", tmp_path, tmp_path / "typo_models" / "model.pt"):
        parser = parser_for(bundle, ["inference.yaml"], tmp_path, ckpt_path=str(given))
        with pytest.raises(Exception) as error:
            parser.get_parsed_content("network_def")
        assert str(given) in cause(error.value) and "Error" in cause(error.value)


@pytest.fixture(scope="module")
def trained(module_tmp) -> dict[str, Path]:
    """ViT-Tiny 64-px bundle checkpoints (not the bundles' ViT-B 224 default), and a file without any record."""
    root = module_tmp("flags_models")
    files = {"classifier": root / "classifier.pt", "segmenter": root / "segmenter.pt", "bare": root / "bare.pth"}
    save_model_checkpoint(files["classifier"], build_classifier(TINY, 2, img_size=64, global_pool="cls"),
                          "classifier", {"arch": TINY, "image_size": 64, "class_names": ["benign", "malignant"]})
    save_model_checkpoint(files["segmenter"], build_segmenter(TINY, 2, img_size=64, feature_size=8), "segmenter",
                          {"arch": TINY, "image_size": 64, "class_names": ["background", "lesion"],
                           "mask_encoding": "index"})
    torch.save({"patch_embed.proj.weight": torch.zeros(1)}, files["bare"])
    return files


def evaluate_parser(bundle: str, ckpt: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(configs(bundle) / "train.yaml"), str(configs(bundle) / "evaluate.yaml")])
    parser.update({"bundle_root": str(REPO / "bundles" / bundle), "ckpt_path": str(ckpt), **overrides})
    return parser


@pytest.mark.parametrize("bundle,kind,expected", [
    ("usf_mae_classify", "classifier", {"arch": TINY, "image_size": 64, "global_pool": "cls"}),
    # masks read as in training: index masks read as binary collapse every class into class 1 without a word
    ("usf_mae_segment", "segmenter", {"arch": TINY, "image_size": 64, "feature_size": 8, "mask_encoding": "index"}),
])
def test_evaluate_follows_the_checkpoint_record_and_an_explicit_override_wins(bundle, kind, expected,
                                                                              trained) -> None:
    parser = evaluate_parser(bundle, trained[kind])
    assert {key: parser.get_parsed_content(key) for key in expected} == expected
    parser = evaluate_parser(bundle, trained[kind], image_size=32)
    assert parser.get_parsed_content("image_size") == 32 and parser.get_parsed_content("arch") == TINY


@pytest.mark.parametrize("bundle,keys", [
    ("usf_mae_pretrain", ["arch", "image_size", "in_channels", "norm_pix_loss", "dataset_dir", "num_synthetic",
                          "val_fraction", "seed", "data_seed", "mask_ratio", "deannotate"]),
    ("usf_mae_classify", ["arch", "image_size", "in_channels", "global_pool", "linear_probe", "datalist_file", "fold",
                          "seed", "data_seed", "synthetic_per_class", "synthetic_multiclass"]),
    ("usf_mae_segment", ["arch", "image_size", "in_channels", "feature_size", "feature_blocks", "mask_encoding",
                         "datalist_file", "fold", "seed", "data_seed", "synthetic_images", "max_train"]),
])
def test_evaluate_falls_back_to_train_defaults_for_a_file_without_a_record(bundle, keys, trained) -> None:
    """evaluate.yaml restates train.yaml's defaults for files without a record; the two must not drift."""
    train = ConfigParser()
    train.read_config(str(configs(bundle) / "train.yaml"))
    parser = evaluate_parser(bundle, trained["bare"])
    assert {key: parser.get_parsed_content(key) for key in keys} == {key: train.get_parsed_content(key)
                                                                        for key in keys}


@pytest.mark.parametrize("files", [["train.yaml", "evaluate.yaml"], ["inference.yaml"]])
def test_pretrain_evaluate_and_inference_score_as_training_did(files, tmp_path) -> None:
    """A model trained with --mask_ratio 0.5 or --deannotate true was scored with 0.75 and no de-annotation: another
    loss than training's (2.48 where training reported 2.57), without a word."""
    path = tmp_path / "mae.pt"
    save_model_checkpoint(path, build_mae(TINY, img_size=64), "mae",
                          {"arch": TINY, "image_size": 64, "mask_ratio": 0.5, "deannotate": True})
    parser = parser_for("usf_mae_pretrain", files, tmp_path, ckpt_path=str(path))
    assert parser.get_parsed_content("mask_ratio") == 0.5 and parser.get_parsed_content("deannotate") is True
    assert len(parser.get_parsed_content("deannotate_transforms")) == 1
    parser = parser_for("usf_mae_pretrain", files, tmp_path, ckpt_path=str(path), mask_ratio=0.9)
    assert parser.get_parsed_content("mask_ratio") == 0.9  # a given setting still wins


@pytest.mark.parametrize("bundle,files,ckpt,expected", [
    ("usf_mae_segment", ["inference.yaml"], "classifier",
     "(a classifier, usf_mae_classify), but usf_mae_segment needs kind 'segmenter'; use it with the usf_mae_classify "
     "bundle"),
    ("usf_mae_classify", ["inference.yaml"], "segmenter", "use it with the usf_mae_segment bundle"),
    ("usf_mae_classify", ["train.yaml", "evaluate.yaml"], "segmenter", "use it with the usf_mae_segment bundle"),
])
def test_a_checkpoint_of_another_kind_is_named(bundle, files, ckpt, expected, trained, tmp_path) -> None:
    parser = parser_for(bundle, files, tmp_path, ckpt_path=str(trained[ckpt]))
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("trained")
    message = cause(error.value)
    assert message.startswith(f"CheckpointError: {trained[ckpt]} is a checkpoint of kind '{ckpt}'") and expected in message


@pytest.mark.parametrize("datalist_file", [2024, "2024"])
def test_a_segment_datalist_typed_as_a_number_is_the_file_of_that_name(datalist_file, tmp_path, monkeypatch) -> None:
    """``--datalist_file 2024`` reaches the segment config as the int 2024 (fire reads values as literals)."""
    import json

    import cv2
    import numpy as np

    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((8, 8), 90, np.uint8))
        cv2.imwrite(str(tmp_path / f"{name}_mask.png"), np.eye(8, dtype=np.uint8) * 255)
    parts = {part: [{"image": f"{name}.png", "label": f"{name}_mask.png"}] for part, name in (("train", "a"),
                                                                                             ("validation", "b"))}
    (tmp_path / "2024").write_text(json.dumps({"class_names": ["background", "lesion"], **parts}))
    parser = parser_for("usf_mae_segment", ["train.yaml"], tmp_path, datalist_file=datalist_file)
    split = parser.get_parsed_content("split")
    assert split["class_names"] == ["background", "lesion"] and len(split["train"]) == 1


#: The trainer settings the README gives for every bundle (the segmentation bundle lacked them: "unknown setting").
TRAINER_SETTINGS = {"accumulation_steps": 3, "log_interval": 7, "max_nonfinite_steps": 2}


@pytest.mark.parametrize("bundle", ["usf_mae_classify", "usf_mae_segment"])
def test_every_fine_tuning_bundle_takes_the_trainer_settings_and_scales_the_lr_by_them(bundle) -> None:
    parser = ConfigParser()
    parser.read_config(str(configs(bundle) / "train.yaml"))
    trainer = yaml.safe_load((configs(bundle) / "train.yaml").read_text())["train"]["trainer"]
    for name, value in TRAINER_SETTINGS.items():
        assert name in parser.get(), name
        assert trainer[name] == f"@{name}", name
    base = parser.get_parsed_content("optimizer#lr", instantiate=True)
    parser.update({"accumulation_steps": TRAINER_SETTINGS["accumulation_steps"]})
    parser.parse()
    assert parser.get_parsed_content("optimizer#lr") == pytest.approx(3 * base)


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("overlay", [None, "multi_gpu_train.yaml"])
@pytest.mark.parametrize("key, value", [("epochs", -1), ("batch_size", 0), ("num_workers", -2), ("seed", 1.5),
                                        ("data_seed", -1)])
def test_counts_are_checked_before_any_data_is_read(bundle, overlay, key, value) -> None:
    """``--epochs -1`` under ``python -m monai.bundle run`` failed inside ignite after the data was loaded, with a
    57-line traceback; initialize now refuses it first, in the words the runners use."""
    parser = ConfigParser()
    configs = REPO / "bundles" / bundle / "configs"
    parser.read_config([str(configs / "train.yaml"), *([str(configs / overlay)] if overlay else [])])
    assert parser["initialize"][0] == "@settings_check"  # first, before the process group and the weights
    parser.get_parsed_content("settings_check")  # the shipped values pass
    parser[key] = value
    parser.parse()
    with pytest.raises(RuntimeError) as raised:  # ConfigParser wraps what an expression raises
        parser.get_parsed_content("settings_check")
    assert f"--{key} must be a whole number of at least" in str(raised.value.__cause__)


def test_pretraining_records_how_it_scored_its_loss(tmp_path) -> None:
    parser = parser_for("usf_mae_pretrain", ["train.yaml"], tmp_path, mask_ratio=0.6, deannotate="yes")
    record = parser.get_parsed_content("model_record#config", instantiate=False)
    assert {key: parser.get_parsed_content(f"model_record#config#{key}") for key in ("mask_ratio", "deannotate")} \
        == {"mask_ratio": 0.6, "deannotate": True}, record


@pytest.mark.parametrize("bundle", ["usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment"])
@pytest.mark.parametrize("setting, value", [("batch_size", 0), ("num_workers", -1)])
def test_evaluate_checks_the_counts_before_anything_else(bundle, setting, value, tmp_path) -> None:
    """The evaluate overlays replaced train.yaml's initialize without its check: --batch_size 0 gave a 68-line
    traceback from the DataLoader instead of one line."""
    # the seed follows the checkpoint's record (the draw of the part held out)
    network, kind = {"usf_mae_pretrain": (lambda: build_mae(TINY, img_size=64), "mae"),
                     "usf_mae_classify": (lambda: build_classifier(TINY, 2, img_size=64), "classifier"),
                     "usf_mae_segment": (lambda: build_segmenter(TINY, 2, img_size=64, feature_size=8), "segmenter"),
                     }[bundle]
    save_model_checkpoint(tmp_path / "models" / "model.pt", network(), kind, {"arch": TINY})
    parser = parser_for(bundle, ["train.yaml", "evaluate.yaml"], tmp_path, **{setting: value})
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("initialize#0")
    assert f"--{setting} must be a whole number of at least" in cause(error.value)


@pytest.mark.parametrize("bundle", ["usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment"])
def test_tracking_logs_where_the_files_went_as_paths(bundle, tmp_path) -> None:
    """bundle_root and ckpt_dir were logged as the expressions the executed config holds ("$@bundle_root + ...")."""
    tracking = yaml.safe_load((configs(bundle) / "mlflow_tracking.yaml").read_text())["configs"]
    parser = parser_for(bundle, ["train.yaml"], tmp_path)
    parser.update({"tracking_trainer_params": tracking["trainer"]["resolved_params"]})
    resolved = {k: parser.get_parsed_content(f"tracking_trainer_params#{k}") for k in ("bundle_root", "ckpt_dir",
                                                                                     "output_dir")}
    assert resolved == {"bundle_root": str(REPO / "bundles" / bundle), "ckpt_dir": str(tmp_path / "models"),
                        "output_dir": str(tmp_path / "out")}


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("device, precision, computed", [
    ("cpu", "bf16", "fp32"),          # the default precision on a CPU: bf16 autocast runs on CUDA only
    ("cuda:0", "bf16", "bf16"),
    ("cuda:1", "fp32", "fp32"),
])
def test_tracking_logs_the_precision_the_run_computes_in(bundle, device, precision, computed, tmp_path) -> None:
    """MLflow recorded precision 'bf16' for CPU runs that trained in float32 (the run log said float32), and the
    evaluators' amp as the expression "$torch.cuda.is_available() and ...". ``--device`` arrives as text."""
    tracking = yaml.safe_load((configs(bundle) / "mlflow_tracking.yaml").read_text())["configs"]
    parser = parser_for(bundle, ["train.yaml"], tmp_path, device=device, precision=precision)
    runs = TRACKED_RUNS.get(bundle, ("trainer",))  # classify's linear probe logs its own params
    parser.update({f"tracking_{run}_params": tracking[run]["resolved_params"] for run in runs})
    assert [parser.get_parsed_content(f"tracking_{run}_params#precision") for run in runs] == [computed] * len(runs)
    if bundle in FINETUNE_BUNDLES:  # MONAI's evaluator autocasts by amp: logged as the value it resolves to
        assert parser.get_parsed_content("tracking_trainer_params#validate.evaluator.amp") is (computed == "bf16")
        assert parser.get_parsed_content("validate#evaluator#amp") is (computed == "bf16")


# both bundles refuse a fold with a datalist (one fold): the fold is the synthetic default's
@pytest.mark.parametrize("bundle, kind, build, data", [
    ("usf_mae_classify", "classifier", lambda: build_classifier(TINY, 2, img_size=64),
     {"fold": 2, "seed": 7, "data_seed": 9, "synthetic_per_class": 12, "synthetic_multiclass": True}),
    ("usf_mae_segment", "segmenter", lambda: build_segmenter(TINY, 2, img_size=64, feature_size=8),
     {"fold": 3, "seed": 5, "data_seed": 3, "synthetic_images": 40, "max_train": 20}),
])
def test_evaluate_tests_on_the_part_its_training_held_out(bundle, kind, build, data, tmp_path) -> None:
    """A model trained on fold 2 (or a synthetic set of another size) was evaluated on fold 0 of the default set,
    whose test part holds images it trained on (4 of 24 for --synthetic_per_class 12): an inflated score."""
    train = parser_for(bundle, ["train.yaml"], tmp_path, **data)
    recorded = {key: train.get_parsed_content(f"model_record#config#{key}") for key in (*data, "datalist_file")}
    assert recorded == {**data, "datalist_file": None}
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, build(), kind, {"arch": TINY, "image_size": 64, "class_names": ["a", "b"],
                                                "mask_encoding": "binary", **recorded})
    parser = evaluate_parser(bundle, path)
    assert {key: parser.get_parsed_content(key) for key in recorded} == recorded
    parser = evaluate_parser(bundle, path, fold=0, datalist_file=None)
    assert parser.get_parsed_content("fold") == 0 and parser.get_parsed_content("datalist_file") is None  # given wins


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
@pytest.mark.parametrize("fold", [2, "1"])
def test_a_fold_with_a_datalist_is_refused(tmp_path, bundle, fold) -> None:
    """--fold N with --datalist_file (one fold, chosen by make-datalist) was ignored, yet recorded in model.pt and
    MLflow as the fold trained on."""
    (tmp_path / "list.json").write_text("{}")
    train = parser_for(bundle, ["train.yaml"], tmp_path, datalist_file=str(tmp_path / "list.json"), fold=fold)
    for key in ("model_record#config#fold", "split"):
        with pytest.raises(Exception) as error:
            train.get_parsed_content(key)
        assert cause(error.value) == (f"ValueError: --fold {fold!r} does not apply to --datalist_file "
                                      f"{str(tmp_path / 'list.json')!r}: the datalist is one fold; make it with "
                                      "make-datalist --fold N")


#: The MLflow runs of each bundle that log the fold among their resolved params.
TRACKED_RUNS = {"usf_mae_classify": ("trainer", "probe_runner"), "usf_mae_segment": ("trainer",)}


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
@pytest.mark.parametrize("datalist, fold, recorded", [(True, 0, None), (True, None, None), (False, 3, 3)])
def test_the_fold_recorded_is_null_with_a_datalist(tmp_path, bundle, datalist, fold, recorded) -> None:
    """The model record and the MLflow params say the datalist was the fold (null), not the unused --fold 0."""
    tracking = yaml.safe_load((configs(bundle) / "mlflow_tracking.yaml").read_text())["configs"]
    (tmp_path / "list.json").write_text("{}")
    train = parser_for(bundle, ["train.yaml"], tmp_path, fold=fold,
                       datalist_file=str(tmp_path / "list.json") if datalist else None)
    train.update({f"{run}_params": tracking[run]["resolved_params"] for run in TRACKED_RUNS[bundle]})
    assert train.get_parsed_content("model_record#config#fold") == recorded
    assert [train.get_parsed_content(f"{run}_params#fold") for run in TRACKED_RUNS[bundle]] == \
        [recorded] * len(TRACKED_RUNS[bundle])


#: Per fine-tuning bundle: its checkpoint kind, a tiny network of that kind, and the class names of its datalists.
FINETUNED = {
    "usf_mae_classify": ("classifier", lambda: build_classifier(TINY, 2, img_size=64), ["a", "b"]),
    "usf_mae_segment": ("segmenter", lambda: build_segmenter(TINY, 2, img_size=64, feature_size=8),
                        ["background", "lesion"]),
}


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
def test_evaluate_reads_an_older_record_of_a_fold_with_a_datalist(tmp_path, bundle) -> None:
    """Checkpoints saved before the refusal recorded the ignored --fold beside their datalist: still evaluated."""
    (tmp_path / "list.json").write_text("{}")
    path = tmp_path / "model.pt"
    kind, build, class_names = FINETUNED[bundle]
    save_model_checkpoint(path, build(), kind, {"arch": TINY, "image_size": 64, "class_names": class_names,
                                                "mask_encoding": "binary", "fold": 3,
                                                "datalist_file": str(tmp_path / "list.json")})
    parser = evaluate_parser(bundle, path)
    assert parser.get_parsed_content("fold") is None
    assert parser.get_parsed_content("model_record#config#fold") is None


def test_a_recorded_datalist_that_is_gone_says_where_the_path_came_from(tmp_path) -> None:
    """It said "datalist not found" of a file the user never gave."""
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, build_classifier(TINY, 2, img_size=64), "classifier",
                          {"arch": TINY, "image_size": 64, "class_names": ["a", "b"],
                           "datalist_file": "/elsewhere/fold2.json"})
    with pytest.raises(Exception) as error:
        evaluate_parser("usf_mae_classify", path).get_parsed_content("datalist_file")
    assert f"{path} was trained on the datalist '/elsewhere/fold2.json', which is not a file here" in cause(error.value)
    assert "give --datalist_file" in cause(error.value)


def test_a_recorded_none_is_kept_not_replaced_by_the_default(tmp_path) -> None:
    """--max_train null (no cap) came back as 50: validation and train parts of another size were scored."""
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, build_segmenter(TINY, 2, img_size=64, feature_size=8), "segmenter",
                          {"arch": TINY, "image_size": 64, "class_names": ["background", "lesion"],
                           "mask_encoding": "binary", "max_train": None, "datalist_file": None})
    parser = evaluate_parser("usf_mae_segment", path)
    assert parser.get_parsed_content("max_train") is None and parser.get_parsed_content("datalist_file") is None


@pytest.mark.parametrize("bundle, data, parts", [
    ("usf_mae_pretrain", {"num_synthetic": 12}, "datalists"),
    ("usf_mae_classify", {"synthetic_per_class": 12}, "split"),
    ("usf_mae_segment", {"synthetic_images": 20, "max_train": 10}, "split"),
])
def test_data_seed_keeps_the_data_while_the_seed_changes(bundle, data, parts, tmp_path) -> None:
    """--seed also drew the synthetic default and its split: repeating a run over seeds changed its data too."""
    def images(**seeds) -> dict[str, list[str]]:
        parser = parser_for(bundle, ["train.yaml"], tmp_path, cache_dir=str(tmp_path / "cache"), **data, **seeds)
        found = parser.get_parsed_content(parts)
        return {part: sorted(str(it["image"]) for it in found[part])
                for part in ("train", "validation", "test") if part in found}

    assert images(seed=1, data_seed=42) == images(seed=42)
    assert images(seed=1) != images(seed=42)  # the default still follows --seed, as before


@pytest.mark.parametrize("bundle", ["usf_mae_classify", "usf_mae_segment"])
def test_fine_tuning_follows_the_init_checkpoints_record_and_a_given_setting_wins(bundle, tmp_path) -> None:
    """The README's hand-off, ``--init_checkpoint <pretrain>/models/model.pt``, built the ViT-B 224-px 3-channel
    defaults: a tiny encoder was refused for its head count, and a 64-px gray one silently had its position grid
    stretched and its patch embedding widened to 224 px and 3 channels."""
    gray = build_mae(TINY, img_size=64, in_chans=1)
    save_model_checkpoint(tmp_path / "model.pt", gray, "mae", {"arch": TINY, "image_size": 64})
    base = {"bundle_root": str(REPO / "bundles" / bundle), "ckpt_dir": str(tmp_path / "models"),
            "output_dir": str(tmp_path / "out"), "init_checkpoint": str(tmp_path / "model.pt")}
    parser = ConfigParser()
    parser.read_config(str(configs(bundle) / "train.yaml"))
    parser.update(base)
    assert [parser.get_parsed_content(key) for key in ("arch", "image_size", "in_channels")] == [TINY, 64, 1]
    parser = ConfigParser()
    parser.read_config(str(configs(bundle) / "train.yaml"))
    parser.update({**base, "image_size": 32})
    assert [parser.get_parsed_content(key) for key in ("arch", "image_size", "in_channels")] == [TINY, 32, 1]
    parser = ConfigParser()
    parser.read_config(str(configs(bundle) / "train.yaml"))
    parser.update({**base, "init_checkpoint": None})  # no checkpoint: the documented defaults
    assert [parser.get_parsed_content(key) for key in ("arch", "image_size", "in_channels")] == [
        "mae_vit_base_patch16_dec512d8b", 224, 3]


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("resume, checkpoint, resumed", [
    ("true", "own", True),        # a resume: the files in the folders are its own earlier outputs
    ("true", None, False),        # --resume true that finds no checkpoint starts afresh
    ("true", "earlier", False),   # as does one that finds only an earlier run's (earlier_checkpoints.json)
    ("false", "own", False),
])
def test_only_a_run_that_resumes_a_checkpoint_logs_the_files_it_finds_as_its_own(bundle, resume, checkpoint, resumed,
                                                                                 tmp_path) -> None:
    """The trainer's MLflow handler logs the files the output folders held before it started only when they are its
    training's own: a fresh start under --resume true logged pictures earlier runs left there (epoch_0001.png of a
    run that validated every epoch, beside its own epoch_0002.png) as its own."""
    from monai_ext.handlers.checkpointing import record_earlier_checkpoints

    tracking = yaml.safe_load((configs(bundle) / "mlflow_tracking.yaml").read_text())["configs"]
    if checkpoint:
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "checkpoint_iteration=4.pt").write_bytes(b"weights")
        if checkpoint == "earlier":
            record_earlier_checkpoints(tmp_path / "models")
    parser = parser_for(bundle, ["train.yaml"], tmp_path, resume=resume)
    parser.update({"tracking_trainer_resumed": tracking["trainer"]["resumed"]})
    assert parser.get_parsed_content("tracking_trainer_resumed") is resumed


@pytest.mark.parametrize("bundle,model,example", [
    ("usf_mae_classify", lambda: build_classifier(TINY, 2, img_size=64), "['benign', 'malignant']"),
    # a segmenter's names begin with the background: the classifier's example would label it "benign"
    ("usf_mae_segment", lambda: build_segmenter(TINY, 2, img_size=64, feature_size=8), "['background', 'lesion']"),
])
def test_inference_on_a_checkpoint_without_class_names_refuses_to_invent_them(tmp_path, bundle, model,
                                                                             example) -> None:
    """The classify bundle labelled such a checkpoint's predictions benign/malignant without a word (a model trained
    on normal/abnormal relabelled), and the segment bundle failed with a KeyError; given names are taken."""
    path = tmp_path / "unnamed.pt"
    save_model_checkpoint(path, model(), "segmenter" if bundle == "usf_mae_segment" else "classifier")
    parser = parser_for(bundle, ["inference.yaml"], tmp_path, ckpt_path=str(path))
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("class_names")
    message = cause(error.value)
    assert message.startswith(f"ValueError: {path} records no class names") and "--class_names" in message
    assert f"--class_names \"{example}\"" in message and "MONAI Label: --conf overrides" in message
    given = parser_for(bundle, ["inference.yaml"], tmp_path, ckpt_path=str(path), class_names=["normal", "abnormal"])
    assert given.get_parsed_content("class_names") == ["normal", "abnormal"]


def test_classifier_inference_without_any_checkpoint_keeps_its_default_names(tmp_path) -> None:
    """Before training (no models/model.pt) the config still parses, as verify_net_in_out and ckpt_export need."""
    parser = parser_for("usf_mae_classify", ["inference.yaml"], tmp_path)
    parser["ckpt_path"] = str(REPO / "bundles" / "usf_mae_classify" / "models" / "model.pt")
    if Path(parser["ckpt_path"]).exists():
        pytest.skip("a trained models/model.pt is in the bundle folder")
    assert parser.get_parsed_content("class_names") == ["benign", "malignant"]


def _fold_datalists(tmp_path: Path, bundle: str = "usf_mae_classify") -> tuple[Path, Path]:
    """Two datalists of ``bundle`` of one folder of 8 images (``data/<group>/<i>.png``; for segmentation each with
    its lesion mask in ``masks/<group>/<i>.png``) whose parts overlap: fold1.json tests on two images that fold0.json
    trains and validates on."""
    import cv2
    import numpy as np

    from monai_ext.data.datalists import write_split

    task = "segmentation" if bundle == "usf_mae_segment" else "classification"
    items = []
    for c, name in enumerate(("a", "b")):
        for folder in ("data", "masks"):
            (tmp_path / folder / name).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(tmp_path / "data" / name / f"{i}.png"), np.full((8, 8), 10 * i + c, np.uint8))
            mask = np.zeros((8, 8), np.uint8)
            mask[2:6, 2:6] = 255
            cv2.imwrite(str(tmp_path / "masks" / name / f"{i}.png"), mask)
            label = str(tmp_path / "masks" / name / f"{i}.png") if task == "segmentation" else c
            items.append({"image": str(tmp_path / "data" / name / f"{i}.png"), "label": label})
    fold0 = {"train": items[0:2] + items[4:6], "validation": [items[2], items[6]], "test": [items[3], items[7]]}
    fold1 = {"train": items[1:4] + items[5:8], "validation": [], "test": [items[0], items[4]]}
    class_names = FINETUNED[bundle][2]
    return (write_split(fold0, class_names, tmp_path / "lists" / "fold0.json", task),
            write_split(fold1, class_names, tmp_path / "lists" / "fold1.json", task))


def _trained_on(tmp_path: Path, datalist: Path, bundle: str = "usf_mae_classify", **drop) -> Path:
    """model.pt as ``bundle``'s training records it on ``datalist`` (``drop``: record keys left out)."""
    train = parser_for(bundle, ["train.yaml"], tmp_path, datalist_file=str(datalist))
    config = train.get_parsed_content("model_record#config")
    path = tmp_path / "models" / "model.pt"
    kind, build, _ = FINETUNED[bundle]
    save_model_checkpoint(path, build(), kind, {k: v for k, v in config.items() if k not in drop})
    return path


def _image_check(parser: ConfigParser) -> str:
    """The id of the evaluate overlay's check of the test images against the checkpoint's record: its place in
    ``initialize`` differs between bundles (the segmentation bundle checks its masks first)."""
    steps = parser["initialize"]
    return f"initialize#{next(i for i, step in enumerate(steps) if 'check_evaluated_images' in str(step))}"


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
@pytest.mark.parametrize("given, edit, warned", [
    ("fold1.json", False, "2 of 2 image(s) of the test part of {lists}/fold1.json are training or validation images"),
    ("fold0.json", True, "{lists}/fold0.json changed since"),
    ("fold0.json", False, None),
])
def test_evaluate_warns_of_test_images_the_checkpoint_trained_on(tmp_path, caplog, bundle, given, edit,
                                                                 warned) -> None:
    """Evaluate scored another datalist's test part, holding images the checkpoint trained on, without a word."""
    fold0, _ = _fold_datalists(tmp_path, bundle)
    path = _trained_on(tmp_path, fold0, bundle)
    recorded = torch.load(path, weights_only=True)["arch"]["config"]
    assert recorded["trained_images"] == ["../data/a/0.png", "../data/a/1.png", "../data/a/2.png", "../data/b/0.png",
                                          "../data/b/1.png", "../data/b/2.png"]
    if edit:
        fold0.write_text(fold0.read_text() + "\n")
    parser = evaluate_parser(bundle, path, datalist_file=str(tmp_path / "lists" / given),
                             output_dir=str(tmp_path / "out"))
    with caplog.at_level("WARNING"):
        seen = parser.get_parsed_content(_image_check(parser))
    if warned is None:
        assert seen == [] and "training or validation images" not in caplog.text and "changed" not in caplog.text
    else:
        assert warned.format(lists=tmp_path / "lists") in caplog.text, caplog.text
    if given == "fold1.json":
        assert sorted(Path(p).name for p in seen) == ["0.png", "0.png"] and "e.g. 0.png, 0.png" in caplog.text


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
def test_evaluate_of_an_older_checkpoint_without_the_record_is_silent(tmp_path, caplog, bundle) -> None:
    fold0, fold1 = _fold_datalists(tmp_path, bundle)
    path = _trained_on(tmp_path, fold0, bundle, datalist_sha256=None, trained_images=None)
    parser = evaluate_parser(bundle, path, datalist_file=str(fold1), output_dir=str(tmp_path / "out"))
    with caplog.at_level("WARNING"):
        assert parser.get_parsed_content(_image_check(parser)) == []
    assert "training or validation images" not in caplog.text


@pytest.mark.parametrize("bundle", FINETUNE_BUNDLES)
def test_cross_validation_warns_of_a_start_trained_on_a_folds_test_images(tmp_path, caplog, bundle) -> None:
    """``ours=models/model.pt`` fine-tuned by the bundle on a datalist of the same images: the folds whose test
    part it trained on are warned of (a segmentation checkpoint recorded no images, so none was)."""
    from monai_ext.apps import crossval
    from monai_ext.data.datalists import read_split
    from monai_ext.data.downstream import Protocol

    fold0, fold1 = _fold_datalists(tmp_path, bundle)
    path = _trained_on(tmp_path, fold0, bundle)
    task = "segmentation" if bundle == "usf_mae_segment" else "classification"
    splits = [read_split(fold0, task), read_split(fold1, task)]
    protocol = Protocol("toy", splits[0]["class_names"], [{k: s[k] for k in ("train", "validation", "test")}
                                                          for s in splits])
    with caplog.at_level("WARNING"):
        found = crossval.warn_of_starts_trained_on_test_images([f"ours={path}"], None, protocol, [0, 1])
    assert found == {"ours": [1]}, caplog.text
    assert f"2 of 2 image(s) of toy test fold 1 (start ours) are training or validation images of {path}" in \
        caplog.text


@pytest.mark.parametrize("eval_split", ["test", "validation", "train"])
def test_evaluate_names_its_key_metric_by_the_part_it_scores(tmp_path, eval_split) -> None:
    """Evaluate logged its test score as val_macro_f1 ("Got new best metric of val_macro_f1")."""
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, build_classifier(TINY, 2, img_size=64), "classifier",
                          {"arch": TINY, "image_size": 64, "class_names": ["benign", "malignant"]})
    parser = evaluate_parser("usf_mae_classify", path, eval_split=eval_split, cache_dir=str(tmp_path / "cache"))
    assert list(parser.get_parsed_content("validate#evaluator#key_val_metric")) == [f"{eval_split}_macro_f1"]
    assert parser.get_parsed_content("validate#report_writer").key_metric == f"{eval_split}_macro_f1"
    train = parser_for("usf_mae_classify", ["train.yaml"], tmp_path)  # training's validation keeps its name
    assert list(train.get_parsed_content("validate#evaluator#key_val_metric")) == ["val_macro_f1"]
