"""A user's mistake under ``python -m monai.bundle run`` ends in one line naming the bundle and exit code 2; other
errors, and every error with MONAI_EXT_TRACEBACK=1, keep their traceback."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from monai_ext.apps import one_line_errors
from monai_ext.apps.bundle_support import as_flag, classification_split
from monai_ext.io.checkpoints import read_checkpoint
from tests.bundles.helpers import REPO, bundle_command
from tests.warm_python import run_python


@pytest.mark.parametrize("argv, name", [
    (["run", "--config_file", "bundles/usf_mae_segment/configs/train.yaml"], "usf_mae_segment"),
    (["run", "--config_file=['bundles/usf_mae_classify/configs/train.yaml','x/evaluate.yaml']"], "usf_mae_classify"),
    (["run", "--config_file", '["/opt/b/usf_mae_pretrain/configs/train.json"]'], "usf_mae_pretrain"),
    (["run", "--epochs", "2"], "monai.bundle run"),
])
def test_bundle_name_comes_from_the_first_config_file(argv: list[str], name: str) -> None:
    assert one_line_errors.bundle_name(argv) == name


def test_the_hook_is_installed_only_under_python_m_monai_bundle() -> None:
    assert one_line_errors.running_monai_bundle("/venv/lib/python3.11/site-packages/monai/bundle/__main__.py")
    assert not one_line_errors.running_monai_bundle(sys.argv[0])  # pytest: in-process bundle runs keep tracebacks
    assert sys.excepthook is not one_line_errors.report_user_error


def wrapped(call: Callable[[], object]) -> RuntimeError:
    """What ``call`` raises, inside two RuntimeErrors, as MONAI's config evaluation raises it."""
    try:
        try:
            call()
        except BaseException as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as middle:
        try:
            raise RuntimeError("Failed to instantiate component") from middle
        except RuntimeError as outer:
            return outer
    raise AssertionError("the call raised nothing")


def refused_flag() -> None:
    as_flag("maybe", "resume")


def wrong_digest(tmp: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp / "w.pt")
    read_checkpoint(tmp / "w.pt", sha256="ab" * 32)


def folder_under_a_file(tmp: Path) -> None:
    """The operating system refusing a path, raised inside pathlib: the user's paths, not a fault to debug."""
    (tmp / "out").touch()
    (tmp / "out" / "models").mkdir(parents=True)


def malformed_datalist(tmp: Path) -> None:
    (tmp / "fold0.json").write_text('{"class_names": ["benign", "malignant"], "train": [')  # a hand edit cut short
    classification_split(tmp / "fold0.json", tmp / "cache")


def library_value_error() -> None:
    """A ValueError raised inside torch: a fault to debug, not a user's mistake."""
    torch.nn.functional.cross_entropy(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("call, one_line", [
    (lambda tmp: refused_flag(), "resume must be true or false (or yes/no, 1/0), got 'maybe'"),
    (wrong_digest, "has SHA-256"),
    (lambda tmp: read_checkpoint(tmp / "missing.pt"), "missing.pt' does not exist"),
    (folder_under_a_file, "[Errno 20] Not a directory"),
    (malformed_datalist, "fold0.json' is not valid JSON: Expecting value at line 1 column 52"),
    (lambda tmp: library_value_error(), None),
    (lambda tmp: {}["a bug"], None),
])
def test_user_errors_are_one_line_and_others_keep_the_traceback(call, one_line, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["monai/bundle/__main__.py", "run", "--config_file", "b/usf_mae_x/configs/t.yaml"])
    exits: list[int] = []
    monkeypatch.setattr(one_line_errors, "exit_now", exits.append)
    monkeypatch.delenv("MONAI_EXT_TRACEBACK", raising=False)
    outer = wrapped(lambda: call(tmp_path))
    one_line_errors.report_user_error(RuntimeError, outer, outer.__traceback__)
    err = capsys.readouterr().err
    if one_line is None:
        assert "Traceback" in err and exits == []
    else:
        assert err.startswith("usf_mae_x: ") and one_line in err and err.count("\n") == 1, err
        assert err.endswith("(MONAI_EXT_TRACEBACK=1 shows where)\n") and exits == [2]


CONFIG = ["--config_file", "bundles/usf_mae_classify/configs/inference.yaml"]


@pytest.mark.parametrize("argv, hinted", [
    (["ckpt_export", "network_def", "--ckpt_file", "/runs/c3/models/model.pt", *CONFIG], True),
    (["ckpt_export", "network_def", "--ckpt_file=/runs/c3/models/model.pt", *CONFIG], True),
    (["ckpt_export", "network_def", "--ckpt_file", "/runs/c3/model.pt", "--ckpt_path", "/runs/c3/model.pt", *CONFIG],
     False),
    # the network was built from that very file: a --image_size or --linear_probe override caused the mismatch
    (["ckpt_export", "network_def", "--ckpt_file", "bundles/usf_mae_classify/models/model.pt", *CONFIG], False),
    (["ckpt_export", "network_def", "--ckpt_file", "/runs/c3/models/model.pt", "--ckpt_dir", "/runs/c3/models",
      *CONFIG], False),
    (["run", "--ckpt_file", "/runs/c3/models/model.pt", *CONFIG], False),
])
def test_an_export_of_weights_into_another_network_says_to_give_ckpt_path(argv, hinted) -> None:
    """The classify README's ckpt_export of a model.pt outside models/ without --ckpt_path ended in torch's
    size-mismatch dump: the network was built from the bundle's default file."""
    network = torch.nn.Linear(4, 3)
    try:
        try:
            network.load_state_dict(torch.nn.Linear(4, 2).state_dict())  # "size mismatch for weight"
        except RuntimeError as e:
            raise RuntimeError("ckpt_export failed") from e
    except RuntimeError as outer:
        message = one_line_errors.export_of_another_network(outer, ["monai/bundle/__main__.py", *argv])
    assert (message is not None) == hinted
    if hinted:
        assert message.startswith("--ckpt_file's weights do not fit the network") and "give --ckpt_path" in message


@pytest.mark.parametrize("message, hinted", [
    ("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++')", True),
    ("Compiler: g++ is not found.", False),  # another compiler trouble keeps its traceback
])
def test_compile_without_a_compiler_says_how_to_go_on(message, hinted) -> None:
    """``--compile true`` where no C++ compiler works failed at the first iteration with some 390 lines of log."""
    try:
        try:
            raise RuntimeError(message)
        except RuntimeError as e:
            raise RuntimeError("backend='inductor' raised") from e
    except RuntimeError as outer:
        said = one_line_errors.compile_without_a_compiler(outer)
    assert (said is not None) == hinted
    if hinted:
        assert said.startswith("--compile true needs a working C++ compiler") and "--compile false" in said


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is of CUDA on a machine without it")
def test_device_cuda_without_a_gpu_exits_2_with_one_line(tmp_path) -> None:
    cmd = bundle_command("run", ["bundles/usf_mae_classify/configs/inference.yaml"],
                         {"device": "cuda", "allow_random_weights": True, "output_dir": str(tmp_path / "out"),
                          "input_files": [str(tmp_path / "scan.png")]})
    result = run_python(cmd, cwd=REPO, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("usf_mae_classify: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    assert "device 'cuda': this machine has no usable CUDA device" in lines[0]


@pytest.mark.parametrize("traceback", [False, True])
def test_bundle_command_line_mistake_exits_2_with_one_line(tmp_path, traceback: bool) -> None:
    """The real thing, in a fresh interpreter (the others fork the warm one): inference asked for a checkpoint that
    does not exist."""
    cmd = bundle_command("run", ["bundles/usf_mae_segment/configs/inference.yaml"],
                         {"ckpt_path": str(tmp_path / "missing.pt"), "output_dir": str(tmp_path / "out"),
                          "input_files": [str(tmp_path / "scan.png")]})
    env = {**os.environ, "MONAI_EXT_TRACEBACK": "1"} if traceback else {
        k: v for k, v in os.environ.items() if k != "MONAI_EXT_TRACEBACK"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in result.stderr.splitlines() if line.startswith("usf_mae_segment: ")]
    if traceback:
        assert result.returncode == 1 and "Traceback" in result.stderr and not lines
    else:
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and len(lines) == 1 and "missing.pt" in lines[0], result.stderr[-3000:]


@pytest.mark.parametrize("bundle", ["usf_mae_classify", "usf_mae_pretrain"])
@pytest.mark.parametrize("setting", ["ckpt_dir", "bundle_root"])
def test_inference_with_a_mistyped_model_folder_is_refused_not_run_with_random_weights(tmp_path, bundle, setting):
    """Random weights are for the bundle's own models/model.pt before training; a --ckpt_dir with a typo gave
    confident predictions from random weights with exit code 0."""
    cmd = bundle_command("run", [f"bundles/{bundle}/configs/inference.yaml"],
                         {setting: str(tmp_path / "typo_models"), "output_dir": str(tmp_path / "out"),
                          "input_files": [str(tmp_path / "scan.png")]})
    result = run_python(cmd, cwd=REPO, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{bundle}: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and "typo_models" in lines[0] and "no such checkpoint file" in lines[0], lines
    assert not (tmp_path / "out").exists()


TRAIN = "bundles/usf_mae_pretrain/configs/train.yaml"
TRACKING = "bundles/usf_mae_pretrain/configs/mlflow_tracking.yaml"


@pytest.mark.parametrize("settings, unknown", [
    (["--ckpt_dri", "models", "--epochs", "2"], ["--ckpt_dri (did you mean --ckpt_dir?)"]),
    (["--ouptut_dir=/tmp/o"], ["--ouptut_dir (did you mean --output_dir?)"]),
    (["--recipes#ultrasound#base_lr", "1e-3", "--optimizer#betas", "[0.9,0.95]"], []),  # nested ids; a new argument
    (["--recipes#ultrasnd#base_lr", "1e-3"], ["--recipes#ultrasnd#base_lr"]),  # a misspelt level is no new argument
    (["--_meta_#version", "9", "--meta_file", "m.json", "--run_id", "run", "--tracking", TRACKING], []),
    (["--tracking", TRACKING, "--tracking_uri", "http://127.0.0.1:5000", "--experiment_name", "e"], []),
    (["--tracking", "mlflow", "--tracking_uri", "http://127.0.0.1:5000"], []),
    (["--tracking_uri", "http://127.0.0.1:5000"], ["--tracking_uri (did you mean --tracking?)"]),  # needs it
    (["--ckpt-dir", "/tmp/a", "--recipes::ultrasound::base_lr", "8e-3"], []),  # fire's hyphens, MONAI's "::"
    (["--epochs", "2", "--", "--verbose"], []),  # fire's own flag after a bare --
    (["--tracking", "{'configs': {}}", "--epochs", "2"], []),  # settings this check cannot read: MONAI's to judge
    (["--base_lr", "1e-3"], ["--base_lr (did you mean --recipes#ultrasound#base_lr or "  # kept per recipe: named
                             "--recipes#ultrasound_physics#base_lr or --recipes#usf_mae#base_lr?)"]),
])
def test_misspelt_settings_are_found(settings, unknown) -> None:
    """MONAI adds any --name to the config, so a misspelt one was ignored in silence (random weights, outputs in the
    bundle folder)."""
    argv = ["/x/monai/bundle/__main__.py", "run", "--config_file", str(REPO / TRAIN), *settings]
    assert one_line_errors.unknown_settings(argv) == unknown


@pytest.mark.parametrize("args, unknown", [
    ({"config_file": str(REPO / TRAIN)}, ["--epoch (did you mean --epochs?)"]),
    ({"config_file": str(REPO / TRAIN), "epoch": 2}, ["--epoch (did you mean --epochs?)"]),  # argv's own is checked
    ({}, []),  # no config named: nothing to check against
])
def test_the_args_file_can_name_the_config(tmp_path, args, unknown) -> None:
    """MONAI reads config_file (and any setting) from --args_file; the check read argv only and refused every
    setting of such a command line."""
    import json

    (tmp_path / "args.json").write_text(json.dumps(args))
    argv = ["/x/monai/bundle/__main__.py", "run", "--args_file", str(tmp_path / "args.json"), "--ckpt_dir", "m",
            "--epoch", "2"]
    assert one_line_errors.unknown_settings(argv) == unknown


CLASSIFY = "bundles/usf_mae_classify/configs/train.yaml"


@pytest.mark.parametrize("settings, unknown", [
    (["--probe#bogus", "1"], ["--probe#bogus"]),  # probe: is a plain mapping, nobody reads a new key of it
    (["--probe#c", "0.1"], ["--probe#c"]),
    (["--probe#cs", "0.1,1", "--probe#ks", "5", "--probe#class_weight", "null"], []),  # the documented ones
    (["--checkpointer#n_saved", "2", "--optimizer#betas", "[0.9,0.95]"], []),  # a new keyword of a component
])
def test_a_new_key_under_a_plain_mapping_is_unknown(settings, unknown) -> None:
    """``--probe#c 0.1`` (for ``probe#cs``) was taken as a new argument and the probe swept its defaults."""
    argv = ["monai/bundle/__main__.py", "run", "--config_file", CLASSIFY, *settings]
    assert [u.split(" (")[0] for u in one_line_errors.unknown_settings(argv)] == unknown


def test_a_misspelt_nested_key_is_pointed_to_the_key_beside_it() -> None:
    argv = ["monai/bundle/__main__.py", "run", "--config_file", CLASSIFY, "--probe#c", "0.1"]
    assert one_line_errors.unknown_settings(argv) == ["--probe#c (did you mean --probe#cs?)"]


@pytest.mark.parametrize("bundle", ["usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment"])
def test_amp_is_pointed_to_the_precision_setting(bundle) -> None:
    """``--amp true`` (MONAI's trainers' switch) got no hint in pretraining and ``--validate#evaluator#amp`` in the
    others, an evaluator setting that follows --precision and does nothing for training."""
    argv = ["monai/bundle/__main__.py", "run", "--config_file", f"bundles/{bundle}/configs/train.yaml", "--amp", "true"]
    assert one_line_errors.unknown_settings(argv) == ["--amp (did you mean --precision bf16?)"]


@pytest.mark.parametrize("settings, message", [
    (["--epochs", "2", "--epochs=3"], "setting --epochs given twice; give each once"),
    (["--dataset_dir", "a", "--dataset-dir", "b"], "setting --dataset_dir given twice"),   # fire's hyphen, same name
    (["--help"], "docs/README.md"),
    (["--epochs", "2", "-h"], "docs/README.md"),
])
def test_a_setting_given_twice_or_help_is_refused_with_a_pointer(settings, message) -> None:
    """MONAI kept the last of two values without a word, and took --help for an unknown setting."""
    argv = ["/x/monai/bundle/__main__.py", "run", "--config_file", str(REPO / TRAIN), *settings]
    with pytest.raises(one_line_errors.UnknownSettings, match=re.escape(message)):
        one_line_errors.check_settings(argv)


@pytest.mark.parametrize("asked", [["--help"], ["--epochs", "2", "-h"]])
def test_help_on_a_bundle_command_line_is_answered_with_exit_code_0(asked, monkeypatch, capsys) -> None:
    """It was reported as an error: exit code 2 and the "MONAI_EXT_TRACEBACK=1 shows where" hint."""
    def leave(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(sys, "argv", ["/x/monai/bundle/__main__.py", "run", "--config_file", str(REPO / TRAIN), *asked])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after the test
    monkeypatch.setattr(one_line_errors, "install_log_filter", lambda: None)
    monkeypatch.setattr(one_line_errors, "exit_now", leave)
    with pytest.raises(SystemExit) as stopped:
        one_line_errors.install()
    out, err = capsys.readouterr()
    assert stopped.value.code == 0 and "docs/README.md" in out and not err


def test_a_misspelt_setting_stops_the_run_in_one_line(tmp_path) -> None:
    cmd = bundle_command("run", ["bundles/usf_mae_classify/configs/inference.yaml"],
                         {"ckpt_pth": str(tmp_path / "model.pt"), "input_files": [str(tmp_path / "scan.png")],
                          "output_dir": str(tmp_path / "out")})
    env = {k: v for k, v in os.environ.items() if k != "MONAI_EXT_TRACEBACK"}
    result = run_python(cmd, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "usf_mae_classify: unknown setting --ckpt_pth (did you mean --ckpt_path?): not defined by the bundle's configs")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, wanted, note", [
    (None, False, False), ("", False, False), ("0", False, False), ("false", False, False), (" No ", False, False),
    ("1", True, False), ("TRUE", True, False), ("yes", True, False),
    ("always", True, True), ("off", True, True),  # not a yes/no word: shown, with a note, never a crash
])
def test_monai_ext_traceback_reads_the_yes_no_words(value, wanted, note, monkeypatch, capsys) -> None:
    """MONAI_EXT_TRACEBACK=0 means no traceback (any non-empty text used to mean yes)."""
    if value is None:
        monkeypatch.delenv("MONAI_EXT_TRACEBACK", raising=False)
    else:
        monkeypatch.setenv("MONAI_EXT_TRACEBACK", value)
    assert one_line_errors.traceback_wanted() is wanted
    err = capsys.readouterr().err
    assert (f"MONAI_EXT_TRACEBACK={value!r} is not one of true/yes/1/false/no/0" in err) is note


@pytest.mark.parametrize("value, one_line", [("0", True), ("false", True), ("1", False), ("maybe", False)])
def test_monai_ext_traceback_0_keeps_the_one_line(value, one_line, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["monai/bundle/__main__.py", "run", "--config_file", "b/usf_mae_x/configs/t.yaml"])
    exits: list[int] = []
    monkeypatch.setattr(one_line_errors, "exit_now", exits.append)
    monkeypatch.setenv("MONAI_EXT_TRACEBACK", value)
    outer = wrapped(refused_flag)
    one_line_errors.report_user_error(RuntimeError, outer, outer.__traceback__)
    err = capsys.readouterr().err
    assert ("Traceback" not in err and exits == [2]) if one_line else ("Traceback" in err and exits == [])


def failed_expression(config: dict, key: str) -> BaseException:
    """What MONAI's ``ConfigParser`` raises when evaluating ``key`` of ``config`` fails."""
    from monai.bundle import ConfigParser

    try:
        ConfigParser(config).get_parsed_content(key)
    except Exception as error:  # noqa: BLE001 - whatever MONAI raises is what the hook meets
        return error
    raise AssertionError(f"{key} evaluated without error")


@pytest.mark.parametrize("argv, config, named", [
    # a folder named by digits: the command line reads it as an int, the path expression then fails
    (["--ckpt_dir", "2025"], {"ckpt_dir": 2025, "path": "$@ckpt_dir + '/model.pt'"}, "--ckpt_dir 2025"),
    (["--output_dir=7.5"], {"output_dir": 7.5, "path": "$@output_dir + '/eval'"}, "--output_dir 7.5"),
    (["--bundle_root", "1", "--seed", "3"], {"bundle_root": 1, "seed": 3, "path": "$@bundle_root + '/x'"},
     "--bundle_root 1"),
    (["--dataset_dir", "2024"], {"dataset_dir": 2024, "path": "$'/data/' + @dataset_dir"}, "--dataset_dir 2024"),
    (["--run_name", "7"], {"run_name": 7, "path": "$'fold0_' + @run_name"}, "--run_name 7"),
    # fire reads 2024_01 as 202401 and 0x10 as 16: named as typed, with the quotes that keep it
    (["--output_dir", "2024_01"], {"output_dir": 202401, "path": "$@output_dir + '/eval'"}, "--output_dir 2024_01"),
    (["--ckpt_dir=0x10"], {"ckpt_dir": 16, "path": "$@ckpt_dir + '/model.pt'"}, "--ckpt_dir 0x10"),
    # a component given the setting under its own name (the report writers' and the monitor's output_dir)
    (["--output_dir", "2025"], {"output_dir": 2025, "path": {"_target_": "monai_ext.handlers.history.MetricsHistory",
                                                              "path": "@output_dir"}}, None),
    (["--output_dir", "2025"], {"output_dir": 2025, "path": {
        "_target_": "monai_ext.handlers.segmentation.SegmentationReportWriter", "output_dir": "@output_dir",
        "class_names": ["background", "lesion"]}}, "--output_dir 2025"),
])
def test_a_name_typed_as_a_number_is_named_with_the_quoting_that_keeps_it_text(argv, config, named) -> None:
    message = one_line_errors.setting_typed_as_number(failed_expression(config, "path"), ["run", *argv])
    if named is None:  # passed on under another keyword (path): nothing ties the failure to the setting
        assert message is None
        return
    assert message is not None and message.startswith(f"{named}: read as a number")
    assert "--seed" not in message and message.endswith(f"""{named.split()[0]} "'{named.split()[1]}'\"""")


@pytest.mark.parametrize("argv, config", [
    (["--ckpt_dir", "models"], {"ckpt_dir": 2025, "path": "$@ckpt_dir + '/model.pt'"}),  # not given as a number
    (["--ckpt_dir", "2025"], {"ckpt_dir": 2025, "path": "$@ckpt_dir / 0"}),              # not a TypeError
    (["--seed", "3"], {"seed": 3, "ckpt_dir": 5, "path": "$@ckpt_dir + '/model.pt'"}),   # the number is elsewhere
    # text typed where a number belongs fails beside a number typed right: the number is not to blame
    (["--base_lr", "1e-3x", "--batch_size", "16"], {"base_lr": "1e-3x", "batch_size": 16,
                                                     "path": "$@base_lr * @batch_size <= 0"}),
    (["--batch_size", "16"], {"batch_size": 16, "path": "$@batch_size + 'x'"}),         # not a path or name setting
])
def test_other_expression_failures_are_left_to_the_traceback(argv, config) -> None:
    assert one_line_errors.setting_typed_as_number(failed_expression(config, "path"), ["run", *argv]) is None


def test_the_hook_gives_that_one_line_and_exit_code_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["monai/bundle/__main__.py", "run", "--config_file", "b/usf_mae_x/configs/t.yaml",
                                      "--ckpt_dir", "2025"])
    exits: list[int] = []
    monkeypatch.setattr(one_line_errors, "exit_now", exits.append)
    monkeypatch.delenv("MONAI_EXT_TRACEBACK", raising=False)
    error = failed_expression({"ckpt_dir": 2025, "path": "$@ckpt_dir + '/model.pt'"}, "path")
    one_line_errors.report_user_error(type(error), error, error.__traceback__)
    err = capsys.readouterr().err
    assert err.startswith("usf_mae_x: --ckpt_dir 2025: read as a number") and err.count("\n") == 1 and exits == [2]


@pytest.mark.slow
def test_a_user_error_raised_inside_the_engine_is_one_line_without_the_engines_traceback(tmp_path) -> None:
    """``--resume true`` where no checkpoint reads is refused when the trainer starts, inside ignite's run: MONAI's
    StatsHandler logged the error with its whole traceback before the hook's one line."""
    from tests.bundles.helpers import run_bundle, tiny_pretrain_overrides

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "checkpoint_iteration=3.pt").write_bytes(b"PK\x03\x04 cut short")
    overrides = tiny_pretrain_overrides(tmp_path, tmp_path / "cache", epochs=1, num_synthetic=8, resume="true")
    result = run_bundle(["bundles/usf_mae_pretrain/configs/train.yaml"], overrides, check=False, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("usf_mae_pretrain: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    # the bundles' logging.conf sends log records to stdout: the terminal shows both streams
    assert "Traceback" not in result.stdout + result.stderr, result.stdout[-3000:]
    assert len(lines) == 1 and "none of the 1 checkpoint(s)" in lines[0] and "checkpoint_iteration=3.pt" in lines[0]


def _record_of(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:  # noqa: BLE001 - the record needs the exception as logging.exception sees it
        return logging.LogRecord("StatsHandler", logging.ERROR, __file__, 1, f"Exception: {error}", None, sys.exc_info())


@pytest.mark.parametrize("make_error, environ, kept", [
    (lambda tmp: wrapped(lambda: refused_flag()), {}, False),                      # a user's mistake: the hook says it
    (lambda tmp: wrapped(lambda: read_checkpoint(tmp / "missing.pt")), {}, False),
    (lambda tmp: wrapped(library_value_error), {}, True),                          # a fault keeps its traceback
    (lambda tmp: wrapped(lambda: refused_flag()), {"MONAI_EXT_TRACEBACK": "1"}, True),  # asked for
])
def test_the_engines_log_of_a_user_error_is_left_to_the_hook(make_error, environ, kept, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MONAI_EXT_TRACEBACK", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    error_filter = one_line_errors.UserErrorLogFilter()
    assert error_filter.filter(_record_of(make_error(tmp_path))) is kept
    plain = logging.LogRecord("ignite", logging.ERROR, __file__, 1, "Engine run is terminating", None, None)
    assert error_filter.filter(plain) is True  # records without an exception are never touched
