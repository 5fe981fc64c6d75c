"""``python -m monai_ext``: every user error on the command line ends in one line naming it and exit code 2."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from monai_ext import cli
from monai_ext.cli import main
from monai_ext.networks.checkpoints import save_model_checkpoint
from monai_ext.networks.mae import build_mae

REPO = Path(__file__).resolve().parents[1]


def run_main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "root" / "set"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    torch.save({"a": torch.zeros(1)}, tmp_path / "odd.pt")  # weights of no layout the project knows
    return tmp_path / "root"


@pytest.mark.parametrize("args,message", [
    (["prepare-corpus", "{tmp}/missing", "--out", "{tmp}/cache"], "corpus root '{tmp}/missing' does not exist"),
    (["prepare-corpus", "{tmp}/empty", "--out", "{tmp}/cache"], "no supported files under '{tmp}/empty'"),
    (["prepare-corpus", "{tmp}/root/set/a.png", "--out", "{tmp}/cache"], "is not a folder"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--doppler", "blur"],
     "doppler must be one of inpaint, drop, keep, got 'blur'"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--deannotate", "maybe"],
     "deannotate must be true or false, got 'maybe'"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--size", "8"], "size must be at least 16, got 8"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--workers", "many"],
     "--workers must be an integer, got 'many'"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--workers", "-2"], "workers must be >= 0, got -2"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--doppler_threshold", "2"],
     "doppler_threshold must be in [0, 1], got 2"),
    (["prepare-corpus", "{tmp}/root", "--out", "{tmp}/cache", "--evaluation", "{tmp}/nowhere"],
     "evaluation folder '{tmp}/nowhere' does not exist"),
    (["prepare-corpus", "{tmp}/root"], "no value for the required argument: out"),
    (["synthesize", "{tmp}/sim", "--num", "0"], "num must be at least 1, got 0"),
    (["synthesize", "{tmp}/sim", "--num", "abc"], "--num must be an integer, got 'abc'"),
    (["synthesize", "{tmp}/sim", "--num", "2", "--seed", "-1"], "seed must be >= 0, got -1"),
    (["synthesize", "{tmp}/sim", "--num", "2", "--workers", "0"], "workers must be at least 1 (or None: all cores), got 0"),
    (["synthesize", "{tmp}/sim", "--num", "2", "--workers", "-1"], "workers must be at least 1 (or None: all cores), got -1"),
    (["synthesize", "{tmp}/sim", "--num", "2.5"], "--num must be an integer, got 2.5"),
    (["synthesize", "{tmp}/sim", "--screen_capture", "maybe"], "--screen_capture must be true or false, got 'maybe'"),
    (["synthesize", "{tmp}/sim", "-x", "3"], "unknown option -x: use the long --name form"),
    (["synthesize", "{tmp}/sim", "-s", "3"], "unknown option -s: use the long --name form"),  # seed or size?
    (["synthesize", "{tmp}/sim", "-num", "3"], "unknown option -num: use the long --name form"),
    # an option the protocol does not take (its own error was a TypeError traceback)
    (["make-datalist", "mmotu", "{tmp}/root", "{tmp}/list.json", "--folds", "5"],
     "--folds does not apply to protocol 'mmotu'; it applies to busbra, busbra-seg, busi, csv, folder, "
     "image-mask-folders"),
    (["make-datalist", "folder", "{tmp}/root", "{tmp}/list.json", "--multiclass", "true"],
     "--multiclass does not apply to protocol 'folder'; it applies to mmotu-seg"),
    # checked before the process pool starts (its workers' errors would surface from concurrent.futures)
    (["synthesize", "{tmp}/sim", "--num", "4", "--workers", "2", "--lesion", "nosuch"],
     "lesion must be 'random', None (none on a command line) or one of ('oval', 'irregular', 'cyst'), got "
     "'nosuch'"),
    (["synthesize", "{tmp}/sim", "--num", "4", "--workers", "2", "--fmt", "bmpx"],
     "format must be one of ('png', 'dcm', 'nii'), got 'bmpx'"),
    # the operating system's refusal of a path, raised inside pathlib: the user's paths, not a fault to debug
    (["synthesize", "{tmp}/root/set/a.png/sim", "--num", "2"], "[Errno 20] Not a directory: '{tmp}/root/set/a.png/sim'"),
    (["make-datalist", "folder", "{tmp}/root", "{tmp}/empty"], "is a folder; give the file to write"),
    (["export-onnx", "{tmp}/missing.pt", "{tmp}/x.onnx", "--tolerance", "-1"], "tolerance must be a number >= 0"),
    (["export-onnx", "{tmp}/missing.pt", "{tmp}/x.onnx", "--opset", "new"], "--opset must be an integer, got 'new'"),
    (["make-datalist", "nosuchprotocol", "{tmp}/root", "{tmp}/list.json"], "nosuchprotocol"),
    (["make-datalist", "nosuchprotocol", "{tmp}/root", "{tmp}/list.json"], "'busi'"),  # the list names every task's
    (["inspect-checkpoint", "{tmp}/missing.pt"], "missing.pt"),
    (["inspect-checkpoint", "{tmp}/odd.pt"], "{tmp}/odd.pt: unrecognised checkpoint layout"),  # it named no file
    (["inspect-checkpoint", "{tmp}/empty"], "checkpoint '{tmp}/empty' is a folder; give the checkpoint file"),
    (["inspect-checkpoint", "/dev/null"], "checkpoint '/dev/null' is not a regular file"),
    # refused before any data is generated or any training starts
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "pretrained", "--init_checkpoint", "{tmp}/missing.pt"],
     "checkpoint '{tmp}/missing.pt' does not exist"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "pretrained", "--init_checkpoint", "{tmp}/root/set/a.png"],
     "corrupt or not a torch file"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--epoch", "1"],
     "usf_mae_classify has no setting --epoch"),
    (["cross-validate", "synthetic-seg", "{tmp}/cv", "--methods", "random", "--feature_sise", "8"],
     "usf_mae_segment has no setting --feature_sise"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random,ours={tmp}/missing.pt"],
     "checkpoint '{tmp}/missing.pt' does not exist"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random,random={tmp}/root/set/a.png"],
     "write NAME=CHECKPOINT with NAME a plain word other than pretrained, random, cnn"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random,ours="], "start 'ours=': write NAME=CHECKPOINT"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random,random"], "name each start once"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random,splits={tmp}/x.pt"], "other than pretrained, "
                                                                                     "random, cnn, splits"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", ""], "methods is empty"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "pretrian"], "unknown method 'pretrian'"),
    # settings the runner sets per fold: --fold for --folds ran every fold; --ckpt_dir kept one model of them all
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--fold", "3"],
     "--fold is set by the runner: each fold's split is the runner's; to run fold 3 only, give --folds 3"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--ckpt_dir", "{tmp}/shared"],
     "--ckpt_dir is set by the runner: each run's models go under OUT/<start>/fold<k>/models; choose OUT"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--output_dir", "{tmp}/shared"],
     "--output_dir is set by the runner"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--datalist_file", "{tmp}/d.json"],
     "--datalist_file is set by the runner"),
    (["label-efficiency", "{tmp}/le", "{tmp}/root/set/a.png", "--fold", "1"], "--fold is set by the runner"),
    # numbers a library refused deep inside (scikit-learn's seed check, NumPy's negative dimensions) or that fell
    # back to a default in silence (0)
    # checked first: a whole benchmark was generated (or a dataset read) before it was refused
    (["label-efficiency", "{tmp}/le", "{tmp}/root/set/a.png", "--val_fraction", "1.5", "--cache_dir", "{tmp}/gen"],
     "--val_fraction must be in (0, 0.5), got 1.5"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--data_seed", "-1"],
     "--data_seed must be a whole number from 0 to 2147483647, got -1"),
    (["cross-validate", "folder", "{tmp}/cv", "--root", "{tmp}/root", "--methods", "random", "--data_seed", "-2"],
     "--data_seed must be a whole number from 0 to 2147483647, got -2"),
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--max_train", "-1"],
     "--max_train must be a whole number of at least 1, got -1"),
    (["cross-validate", "synthetic", "{tmp}/cv", "--methods", "random", "--max_train", "0"],
     "--max_train must be a whole number of at least 1, got 0"),
    (["cross-validate", "synthetic", "{tmp}/cv", "--methods", "random", "--per_class", "0"],
     "--per_class must be a whole number of at least 1, got 0"),
    (["label-efficiency", "{tmp}/le", "{tmp}/root/set/a.png", "--per_class", "0"],
     "--per_class must be a whole number of at least 1, got 0"),
    (["label-efficiency", "{tmp}/le", "{tmp}/root/set/a.png", "--data_seed", "-1"],
     "--data_seed must be a whole number from 0 to 2147483647, got -1"),
    # the output checked before the model is built and the source read (the source here does not even exist)
    (["convert-checkpoint", "{tmp}/missing.pt", "{tmp}/empty"], "out '{tmp}/empty' is a folder; give the file to write"),
    (["convert-checkpoint", "{tmp}/missing.pt", "{tmp}/root/set/a.png/x.pt"], "'{tmp}/root/set/a.png' is a file"),
    (["export-onnx", "{tmp}/missing.pt", "{tmp}/root/set/a.png/x.onnx"], "'{tmp}/root/set/a.png' is a file"),
    # converting in place replaced the source (a released checkpoint) by another layout and image size
    (["convert-checkpoint", "{tmp}/root/set/a.png", "{tmp}/root/set/../set/a.png"],
     "out '{tmp}/root/set/../set/a.png' is the source checkpoint itself; give another file to write"),
    (["label-efficiency", "{tmp}/le", "{tmp}/root/set/a.png"], "corrupt or not a torch file"),
    (["inspect-checkpoint", "{tmp}/root/set/a.png"], "corrupt or not a torch file"),
    (["no-such-command"], "no-such-command"),
    # a list typed with spaces: fire gave the stray word to the next parameter (--root) and ran fold 0 only
    (["cross-validate", "synthetic", "{tmp}/cv", "--folds", "0", "9", "--methods", "random"],
     "unexpected argument '9': cross-validate takes PROTOCOL OUT, and every other setting as --name value (lists are "
     "comma-separated: --folds 0,1)"),
    (["synthesize", "{tmp}/a1", "--out", "{tmp}/b1", "--num", "2"], "unexpected argument '{tmp}/a1'"),
    (["bundle-path", "usf_mae_classify", "usf_mae_segment"], "unexpected argument 'usf_mae_segment'"),
    # an option given twice: fire kept the last value without a word
    (["synthesize", "{tmp}/sim", "--num", "2", "--num", "3"], "option --num given twice; give it once"),
    (["make-datalist", "folder", "{tmp}/root", "{tmp}/list.json", "--fold", "0", "--fold=1"],
     "option --fold given twice; give it once"),
    (["cross-validate", "synthetic", "{tmp}/cv", "--epochs", "1", "--epochs", "2"], "option --epochs given twice"),
    (["prepare-corpus", "{tmp}/root", "{tmp}/cache", "--nocrop_fov", "--crop_fov"], "option --crop_fov given twice"),
    (["prepare-corpus", "{tmp}/root", "{tmp}/cache", "--crop_fov", "--nocrop_fov"], "option --crop_fov given twice"),
    # options of another protocol: dropped in silence, every image trained on
    (["cross-validate", "busbra", "{tmp}/cv", "--root", "{tmp}/empty", "--methods", "random", "--max_train", "10"],
     "protocol 'busbra' takes no --max_train (the protocols that do: busi, folder, image-mask-folders, synthetic, "
     "subtle, synthetic-seg)"),
    (["cross-validate", "csv", "{tmp}/cv", "--root", "{tmp}/l.csv", "--methods", "random", "--per_class", "10"],
     "--per_class sizes the generated synthetic and subtle benchmark; protocol 'csv' does not take it"),
    (["cross-validate", "synthetic", "{tmp}/cv", "--methods", "random", "--synthetic_images", "10"],
     "--synthetic_images sizes the generated synthetic-seg benchmark; protocol 'synthetic' does not take it"),
    # refused before generating: it was refused after, advising a fold count the benchmark does not take
    (["cross-validate", "subtle", "{tmp}/cv", "--methods", "random", "--per_class", "3"],
     "per_class must be a whole number of at least 5 (the benchmark's 5 folds test one image of each class in each), "
     "got 3"),
])
def test_user_errors_are_one_line_with_exit_code_2(args, message, dataset, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run_main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message.format(tmp=tmp_path) in err


@pytest.mark.parametrize("content, command, message", [
    ({"model": {"patch_embed.proj.weight": 1, "cls_token": "x"}}, "inspect-checkpoint",
     "'patch_embed.proj.weight' holds int 1, not a tensor of weights"),
    ({"network": {"w": torch.zeros(2)}, "optimizer": {}, "arch": {"format": "monai_ext", "kind": "classifier"}},
     "export-onnx", "a training checkpoint, for resuming a run; give the run's models/model.pt"),
])
def test_odd_checkpoint_contents_are_one_short_line(tmp_path, capsys, content, command, message):
    """A state dict with a number where weights belong gave an AttributeError traceback; a training checkpoint given
    to export-onnx printed its whole content (1.3 MB) as the "one line"."""
    torch.save(content, tmp_path / "odd.pt")
    extra = [str(tmp_path / "x.onnx")] if command == "export-onnx" else []
    code, err = run_main([command, str(tmp_path / "odd.pt"), *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and len(err) < 400, err
    assert message in err


@pytest.mark.parametrize("value, one_line", [("0", True), ("False", True), ("no", True), ("", True),
                                             ("1", False), ("yes", False)])
def test_monai_ext_traceback_0_keeps_the_one_line(value, one_line, tmp_path, monkeypatch, capsys):
    """MONAI_EXT_TRACEBACK is read with the yes/no words: 0 used to turn tracebacks on (any text did)."""
    monkeypatch.setenv("MONAI_EXT_TRACEBACK", value)
    args = ["inspect-checkpoint", str(tmp_path / "missing.pt")]
    if one_line:
        code, err = run_main(args, capsys)
        assert code == 2 and err.count("\n") == 1 and "missing.pt" in err, err
    else:
        with pytest.raises(FileNotFoundError, match="missing.pt"):
            main(args)


@pytest.mark.parametrize("out, message", [
    ("~/folds", "out '~/folds' is a folder; give the file to write"),   # ~ expanded before the check
    ("afile/out.json", "out 'afile/out.json': 'afile' is a file, not a folder"),
    ("afile/sub/out.json", "'afile' is a file, not a folder"),
    ("~/afile/out.json", "'{home}/afile' is a file, not a folder"),
])
def test_make_datalist_refuses_an_out_it_cannot_write_in_one_line(out, message, dataset, tmp_path, monkeypatch,
                                                                  capsys):
    """Before any dataset is read, without the writer's temporary file name or a bare ``[Errno 17]``."""
    home = tmp_path / "home"
    (home / "folds").mkdir(parents=True)
    (home / "afile").touch()
    (tmp_path / "afile").touch()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    code, err = run_main(["make-datalist", "folder", str(dataset), out], capsys)
    assert code == 2 and err.count("\n") == 1 and ".tmp" not in err and "Errno" not in err, err
    assert message.format(home=home) in err, err
    assert sorted(p.name for p in home.iterdir()) == ["afile", "folds"] and not any((home / "folds").iterdir())


@pytest.mark.parametrize("args,message", [
    (["make-datalist", "folder", "{root}", "{tmp}/list.json", "--fold", "7"], "fold must be in [0, 5), got 7"),
    (["make-datalist", "folder", "{root}", "{tmp}/list.json", "--folds", "1"],
     "folds must be an integer from 2 to 7 (the smallest class has 7 image(s)), got 1"),
    (["make-datalist", "folder", "{root}", "{tmp}/list.json", "--folds", "8"], "from 2 to 7"),
    (["cross-validate", "folder", "{tmp}/cv", "--root", "{root}", "--methods", "random", "--folds", "0,9"],
     "folds [0, 9]: protocol 'classes' has folds 0..4"),
    (["cross-validate", "folder", "{tmp}/cv", "--root", "{root}", "--methods", "random", "--folds", "1,1"],
     "folds [1, 1] name a fold twice"),
    (["cross-validate", "folder", "{tmp}/cv", "--root", "{root}", "--methods", "random", "--folds", "a"],
     "--folds must be comma-separated whole numbers, got 'a'"),
    # a misspelt protocol is named as such, with or without --root (it was answered with "needs --root")
    (["cross-validate", "bus-bra", "{tmp}/cv", "--methods", "random"], "unknown protocol 'bus-bra'; choose one of"),
    (["cross-validate", "bus-bra", "{tmp}/cv", "--root", "{root}", "--methods", "random"], "'busbra', 'busbra-seg', 'busi'"),
    # named before the other inputs are checked: a misspelt segmentation protocol was answered as a classification
    # one ("usf_mae_classify has no setting --feature_size"), and the default methods asked for an init checkpoint
    (["cross-validate", "busbra_seg", "{tmp}/cv", "--root", "{root}", "--methods", "random", "--feature_size", "16"],
     "unknown protocol 'busbra_seg'; choose one of"),
    (["cross-validate", "bus-bra", "{tmp}/cv", "--root", "{root}"], "unknown protocol 'bus-bra'; choose one of"),
])
def test_a_fold_the_protocol_lacks_is_a_user_error_before_any_training(args, message, tmp_path, capsys):
    root = tmp_path / "classes"
    for name in ("benign", "malignant"):
        (root / name).mkdir(parents=True)
        for i in range(7):  # 14 images: folds of 2 and 3, not even; each its own (copies are left out)
            cv2.imwrite(str(root / name / f"{i}.png"), np.full((32, 32), 40 * i + len(name), np.uint8))
    code, err = run_main([a.format(tmp=tmp_path, root=root) for a in args], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err
    assert not (tmp_path / "cv" / "splits").exists()   # refused before the first fold was written


@pytest.mark.parametrize("per_class, patients, folds, message", [
    # 2 folds of 2 images per class leave one image per class to train on: no validation part can be carved
    (2, None, 2, "the training part has fewer than 2 images in every class (images per class index: {0: 1, 1: 1})"),
    # 2 patients, 2 folds: each training part holds one patient, and validation must be another one
    (4, 2, 2, "the training part has images of 1 patient(s); a patient-disjoint validation part needs images of at "
              "least 2 patients: add images of other patients\n"),
    (4, 2, 3, "the dataset has images of 2 patient(s); 3 patient-disjoint test folds need images of at least 3 "
              "patients: add images of other patients\n"),   # no fewer folds: 2 would leave 1 patient per training part
])
def test_too_small_a_dataset_is_a_user_error_not_a_scikit_learn_traceback(per_class, patients, folds, message,
                                                                           tmp_path, capsys):
    rows = ["path,label" + (",patient" if patients else "")]
    for c in ("benign", "malignant"):
        for i in range(per_class):
            cv2.imwrite(str(tmp_path / f"{c}{i}.png"), np.full((8, 8), 10 * i + len(c), np.uint8))
            rows.append(f"{c}{i}.png,{c}" + (f",p{i % patients}" if patients else ""))
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    args = ["make-datalist", "csv", str(tmp_path / "labels.csv"), str(tmp_path / "list.json"), "--folds", str(folds)]
    code, err = run_main(args, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_make_datalist_from_a_csv_writes_a_datalist_the_bundles_read(tmp_path, capsys, monkeypatch) -> None:
    """The whole command, as a user runs it from the CSV's folder with relative paths (the CLI passes text)."""
    from monai_ext.data.datalists import read_split

    rows = ["path,label"]
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), i, np.uint8))
        rows.append(f"{i}.png,{'benign' if i % 2 else 'malignant'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    main(["make-datalist", "csv", "labels.csv", "folds/fold1.json", "--fold", "1", "--folds", "5"])
    assert "labels fold 1: train" in capsys.readouterr().out
    split = read_split(tmp_path / "folds" / "fold1.json")
    assert split["class_names"] == ["benign", "malignant"] and len(split["test"]) == 2
    assert sum(len(split[p]) for p in ("train", "validation", "test")) == 10


@pytest.mark.parametrize("column", ["patient_id", "Case"])
def test_make_datalist_refuses_a_patient_column_under_another_name_in_one_line(tmp_path, capsys, column) -> None:
    """It was ignored without a word, and a patient's images landed in both training and test."""
    rows = [f"path,label,{column}"]
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), i, np.uint8))
        rows.append(f"{i}.png,{'benign' if i % 2 else 'malignant'},p{i // 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code, err = run_main(["make-datalist", "csv", str(tmp_path / "labels.csv"), str(tmp_path / "list.json")], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"column(s) ['{column}'] look like a patient's identifier" in err and "rename it to 'patient'" in err
    assert not (tmp_path / "list.json").exists()


def test_make_datalist_csv_of_a_folder_points_to_the_folder_protocol(tmp_path, capsys) -> None:
    """It said "[Errno 21] Is a directory" and nothing of the protocol a folder of class folders takes."""
    (tmp_path / "data" / "benign").mkdir(parents=True)
    code, err = run_main(["make-datalist", "csv", str(tmp_path / "data"), str(tmp_path / "list.json")], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "is a folder: the csv protocol reads a CSV file" in err and "make-datalist folder" in err


@pytest.mark.parametrize("values, fold, said", [((1, 2, 3), 1, "labels fold 1 (column value 2): train"),
                                                 ((0, 1, 2), 0, "labels fold 0 (column value 0): train"),
                                                 (None, 1, "labels fold 1: train")])
def test_make_datalist_names_a_fold_columns_value_beside_the_fold(tmp_path, capsys, values, fold, said) -> None:
    """A ``fold`` column of 1, 2, 3: ``--fold 1`` tests the rows of value 2, and the output said only "fold 1"."""
    from monai_ext.data.datalists import read_split

    rows = ["path,label" + (",fold" if values else "")]
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), i, np.uint8))
        rows.append(f"{i}.png,{'benign' if i % 2 else 'malignant'}" + (f",{values[i % 3]}" if values else ""))
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    main(["make-datalist", "csv", str(tmp_path / "labels.csv"), str(tmp_path / "list.json"), "--fold", str(fold)]
         + ([] if values else ["--folds", "3"]))
    assert said in capsys.readouterr().out
    if values:
        assert sorted(int(Path(it["image"]).stem) % 3 for it in read_split(tmp_path / "list.json")["test"]) == [fold] * 4


@pytest.mark.parametrize("hint, given, expected", [
    (bool, "no", False), (bool, "True", True), (bool, True, True), (bool, "1", True),
    (int, 3, 3), (float, 3, 3.0), ("int | None", None, None), ("str | None", 123, "123"),  # a digest read as a number
    (str, ("a", "b"), "a,b"),                          # fire splits a,b into a tuple
    ("str | tuple[str, ...]", ("pretrained", "random"), ("pretrained", "random")), (object, [1], [1]),
])
def test_arguments_are_coerced_to_their_annotation(hint, given, expected):
    from monai_ext.cli import _coerce

    hint = eval(hint) if isinstance(hint, str) else hint  # noqa: S307 - a fixed annotation string of this test
    value = _coerce("x", given, hint)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("typed", ["2024_01", "0x10"])
def test_a_folder_fire_reads_as_a_number_is_written_as_typed(typed, tmp_path, monkeypatch):
    """``synthesize 2024_01`` wrote into '202401' (fire reads it as 202401, ``0x10`` as 16)."""
    monkeypatch.chdir(tmp_path)
    main(["synthesize", typed, "--num", "1", "--size", "32", "--workers", "1"])
    assert [p.name for p in tmp_path.iterdir()] == [typed]


@pytest.mark.parametrize("given", [2024.1, 1e3, True])
def test_a_text_argument_whose_typed_text_is_lost_is_refused(given):
    """``--root 2024.10`` arrives as 2024.1: the folder '2024.1' would be a wrong guess; the option is named."""
    from monai_ext.cli import _coerce

    with pytest.raises(ValueError, match=r"--root must be text \(a path or a name\), got"):
        _coerce("root", given, str | None)


def test_a_multi_line_error_is_printed_on_one_line(tmp_path, capsys):
    path = tmp_path / "paths.pt"
    torch.save({"where": Path("/tmp")}, path)  # a PosixPath is outside the allow-list; torch's refusal spans lines
    code, err = run_main(["inspect-checkpoint", str(path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "\x1b" not in err, err
    assert "refused to load" in err and "outside the allow-list" in err


def test_a_library_value_error_keeps_its_traceback(monkeypatch, capsys):
    """torch's own ValueError in the middle of a command is a fault to debug, not a user's mistake: no one line."""
    from monai_ext import cli

    def failing(name: str) -> None:
        torch.nn.functional.cross_entropy(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))  # batch mismatch

    monkeypatch.setitem(cli.COMMANDS, "bundle-path", failing)
    with pytest.raises(ValueError, match="batch_size"):
        main(["bundle-path", "classify"])
    assert "monai_ext bundle-path:" not in capsys.readouterr().err


def test_a_user_error_wrapped_by_an_in_process_bundle_run_is_one_line(monkeypatch, tmp_path, capsys):
    """cross-validate runs the bundles in this process: MONAI wraps a config's refusal in RuntimeErrors."""
    from monai_ext import cli
    from monai_ext.apps.bundle_support import bundle_path as locate

    def wrapped(name: str) -> None:
        try:
            locate("no_such_bundle")
        except ValueError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner

    monkeypatch.setitem(cli.COMMANDS, "bundle-path", wrapped)
    code, err = run_main(["bundle-path", "classify"], capsys)
    assert code == 2 and err.startswith("monai_ext bundle-path: ") and "no_such_bundle" in err, err


def test_a_misspelt_option_is_refused_before_anything_runs(dataset, tmp_path, capsys):
    code, err = run_main(["prepare-corpus", str(dataset), "--out", str(tmp_path / "cache"), "--deanotate", "false"],
                         capsys)
    assert code == 2 and err == "monai_ext prepare-corpus: unknown option --deanotate (see --help for the options)\n"
    assert not (tmp_path / "cache").exists()


def test_out_prepared_with_other_settings_is_a_user_error(dataset, tmp_path, capsys):
    main(["prepare-corpus", str(dataset), "--out", str(tmp_path / "cache"), "--size", "32"])
    capsys.readouterr()
    code, err = run_main(["prepare-corpus", str(dataset), "--out", str(tmp_path / "cache"), "--size", "64"], capsys)
    assert code == 2 and err.count("\n") == 1 and "was prepared with other settings (size 32 there, 64 here)" in err


def test_the_module_entry_point_reports_the_same_way(tmp_path):
    """Through ``python -m monai_ext`` itself: one line on stderr, nothing on stdout, exit code 2."""
    result = subprocess.run([sys.executable, "-m", "monai_ext", "prepare-corpus", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "cache")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, check=False)
    assert result.returncode == 2 and result.stdout == ""
    expected = f"monai_ext prepare-corpus: corpus root '{tmp_path / 'missing'}' does not exist"
    assert result.stderr.strip().splitlines() == [expected]


@pytest.mark.parametrize("protocol,expected", [
    ("synthetic-seg", {"num": 75, "max_train": 50, "seed": 3}),
    ("subtle", {"per_class": 60, "max_train": 100, "seed": 3}),
])
def test_cross_validate_data_seed_reaches_the_generated_protocol(protocol, expected, tmp_path, monkeypatch, capsys):
    """--data_seed draws another synthetic set and other folds; --seed stays the bundles' seed."""
    import monai_ext.apps.crossval as crossval

    seen = {}

    def fake_protocol(name, root, cache_dir, **kwargs):
        seen["protocol"] = (name, kwargs)
        return "protocol"

    def fake_run(proto, out, methods, init, folds, overrides, *rest):
        seen["overrides"] = overrides
        return {"table": "table"}

    monkeypatch.setattr(crossval, "protocol_by_name", fake_protocol)
    monkeypatch.setattr(crossval, "cross_validate", fake_run)
    main(["cross-validate", protocol, str(tmp_path / "cv"), "--methods", "random", "--data_seed", "3", "--seed", "7"])
    assert seen["protocol"] == (protocol, expected)
    assert seen["overrides"]["seed"] == 7


def test_label_efficiency_data_seed_draws_the_data_and_seed_reaches_the_bundles(tmp_path, monkeypatch):
    """As in cross-validate: --data_seed draws the benchmark, its folds and the labelled images; --seed is the bundles'."""
    import monai_ext.apps.label_efficiency as label_efficiency

    seen = {}

    def fake_protocol(name, root, cache_dir, counts, per_class, data_seed, num_folds):
        seen["protocol"] = (name, counts, data_seed)
        return "protocol"

    def fake_curve(proto, out, init, counts, repeats, overrides, val_fraction, data_seed):
        seen["curve"] = (overrides, data_seed)
        return {"table": "table", "outputs": {"png": "curve.png"}}

    monkeypatch.setattr(label_efficiency, "curve_protocol", fake_protocol)
    monkeypatch.setattr(label_efficiency, "label_efficiency", fake_curve)
    checkpoint = tmp_path / "model.pt"  # checked before anything runs: a real (tiny) MAE file
    save_model_checkpoint(checkpoint, build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32, depth=1), "mae")
    main(["label-efficiency", str(tmp_path / "curve"), str(checkpoint), "--counts", "2,4", "--data_seed", "3",
          "--seed", "7"])
    assert seen["protocol"] == ("subtle", [2, 4], 3)
    overrides, data_seed = seen["curve"]
    assert data_seed == 3 and overrides["seed"] == 7


@pytest.mark.parametrize("protocol, num_folds, expected", [
    ("folder", "3", {"seed": 4, "folds": 3}),  # a class of 3 images can be cross-validated in 3 folds
    ("csv", None, {"seed": 4}),
    ("busbra", "10", {"folds": 10}),
])
def test_cross_validate_num_folds_and_data_seed_reach_a_dataset_protocol(protocol, num_folds, expected, tmp_path,
                                                                         monkeypatch):
    import monai_ext.apps.crossval as crossval

    seen = {}
    monkeypatch.setattr(crossval, "protocol_by_name", lambda name, root, cache_dir, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(crossval, "cross_validate", lambda *args: {"table": "table"})
    main(["cross-validate", protocol, str(tmp_path / "cv"), "--root", str(tmp_path), "--methods", "random",
          "--data_seed", "4", *(["--num_folds", num_folds] if num_folds else [])])
    assert seen == expected


def test_too_many_folds_for_a_dataset_name_the_option_typed(tmp_path, capsys):
    """The loader's "folds must be an integer from 2 to 3" named make-datalist's option, not --num_folds."""
    for name in ("benign", "malignant"):
        (tmp_path / "root" / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "root" / name / f"{i}.png"), np.random.default_rng([len(name), i]).integers(0, 255, (32, 32), np.uint8))
    code, err = run_main(["cross-validate", "folder", str(tmp_path / "cv"), "--root", str(tmp_path / "root"),
                          "--methods", "random", "--num_folds", "5"], capsys)
    assert code == 2 and "cross-validate: --num_folds must be an integer from 2 to 3" in err, err


def test_an_unknown_command_lists_the_commands(capsys):
    """fire said only "Cannot find key: bogus"."""
    code, err = run_main(["bogus"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "unknown command 'bogus'; the commands are synthesize, inspect-checkpoint, " in err
    code, err = run_main(["bundle_path", "usf_mae_classify"], capsys)
    assert code == 2 and "(did you mean bundle-path?)" in err, err


@pytest.mark.parametrize("word", ["none", "null", "None"])
def test_synthesize_takes_none_for_no_lesion_and_mixed_geometry(word, tmp_path):
    """``--lesion none`` was refused ("lesion must be 'random', None or ..."): only ``None`` became Python's None,
    while the bundles take none and null."""
    main(["synthesize", str(tmp_path / "sim"), "--num", "1", "--size", "32", "--workers", "1", "--lesion", word,
          "--geometry", word])
    assert len(list((tmp_path / "sim").rglob("*.png"))) == 1


@pytest.mark.parametrize("args, message", [
    (["cross-validate", "subtle", "OUT", "--methods", "random", "--num_folds", "3"],
     "protocol 'subtle' is generated with 5 folds: --num_folds does not apply to it"),
    (["cross-validate", "mmotu", "OUT", "--root", "OUT", "--methods", "random", "--num_folds", "3"],
     "protocol 'mmotu' has fixed splits: --num_folds does not apply to it"),
    (["cross-validate", "folder", "OUT", "--root", "OUT", "--methods", "random", "--num_folds", "three"],
     "--num_folds must be an integer, got 'three'"),
    (["cross-validate", "folder", "OUT", "--root", "OUT", "--methods", "random", "--num_folds", "1"],
     "--num_folds must be a whole number of at least 2, got 1"),  # was "folds must be ...", no such option here
    (["label-efficiency", "OUT", "OUT", "--protocol", "folder", "--root", "OUT", "--num_folds", "1"],
     "--num_folds must be a whole number of at least 2, got 1"),
    (["cross-validate", "subtle", "OUT", "--methods", "random", "--epochs", "0"],
     "--epochs must be a whole number of at least 1, got 0"),
])
def test_fold_and_count_mistakes_are_one_line_before_anything_runs(args, message, tmp_path, capsys):
    code, err = run_main([str(tmp_path) if a == "OUT" else a for a in args], capsys)
    assert code == 2 and err.strip().endswith(message), err


def test_cross_validate_refuses_a_data_seed_that_is_not_an_integer(tmp_path, capsys):
    code, err = run_main(["cross-validate", "synthetic-seg", str(tmp_path / "cv"), "--data_seed", "one"], capsys)
    assert code == 2 and err.strip().endswith("--data_seed must be an integer, got 'one'"), err


@pytest.mark.slow
def test_segmentation_cross_validation_from_a_relative_cache_dir(tmp_path, monkeypatch, capsys):
    """The fold datalists are written in splits/ and read from there: the masks of a relative --cache_dir must be
    written absolute, as the images are, or every fold is refused as 'file(s) not found'."""
    monkeypatch.chdir(tmp_path)
    main(["cross-validate", "synthetic-seg", "cv", "--methods", "random", "--folds", "0", "--synthetic_images", "12",
          "--epochs", "1", "--image_size", "32", "--cache_dir", "cache"])
    fold = json.loads((tmp_path / "cv" / "splits" / "fold0.json").read_text())
    assert all(os.path.isabs(item["label"]) for item in fold["train"] + fold["validation"] + fold["test"])
    assert "mean_dice" in (tmp_path / "cv" / "cv_table.md").read_text()


@pytest.mark.parametrize("args", [
    ["synthesize", "{tmp}/sim", "--help"],
    ["make-datalist", "folder", "{tmp}/root", "{tmp}/keep.json", "-h"],
    ["cross-validate", "synthetic", "{tmp}/cv", "--help"],
    ["cross-validate", "--help"],
    ["label-efficiency", "--help"],
    ["bundle-path", "usf_mae_classify", "--help"],
    # fire's own way, after "--": the command ran first (a datalist written, images simulated)
    ["make-datalist", "folder", "{tmp}/root", "{tmp}/keep.json", "--folds", "2", "--", "--help"],
    ["synthesize", "{tmp}/sim", "--num", "3", "--", "--help"],
])
def test_help_anywhere_shows_help_exits_0_and_runs_nothing(args, dataset, tmp_path, capsys):
    """fire takes --help as a request for help only before the arguments: after them the command ran (1000 images
    simulated, a datalist overwritten) and then showed its result's help; commands taking bundle settings exited 2."""
    (tmp_path / "keep.json").write_text('{"mine": 1}')
    code, err = run_main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 0, err
    assert f"monai_ext {args[0]}" in err and "SYNOPSIS" in err  # fire writes its help to stderr
    assert not (tmp_path / "sim").exists() and not (tmp_path / "cv").exists()
    assert (tmp_path / "keep.json").read_text() == '{"mine": 1}'


def test_the_short_flags_help_shows_are_taken(tmp_path, capsys):
    """``--help`` lists ``-n, --num`` and ``-w, --workers`` (fire's short forms, one option to a letter): they were
    refused as unknown options."""
    main(["synthesize", str(tmp_path / "sim"), "-n", "2", "-w=1", "--fmt", "png"])
    assert sorted(p.name for p in (tmp_path / "sim").glob("*.png")) == ["us_000000.png", "us_000001.png"]


@pytest.mark.parametrize("remove", ["images/3.JPG", "images/45.JPG"])  # listed in train_cls.txt / val_cls.txt
def test_make_datalist_refuses_a_listed_file_missing_on_disk_and_writes_nothing(remove, tmp_path, capsys) -> None:
    """MMOTU's lists name images a partial download lacks: the datalist was written (exit 0) and only a bundle
    refused it later, after cross-validation had trained the folds before. The list that names it is named."""
    from tests.data.test_downstream import make_mmotu

    make_mmotu(tmp_path / "OTU_2d")
    (tmp_path / "OTU_2d" / remove).unlink()
    code, err = run_main(["make-datalist", "mmotu", str(tmp_path / "OTU_2d"), str(tmp_path / "list.json")], capsys)
    name = remove.split("/")[1]
    assert code == 2 and err.count("\n") == 1 and "lists 1 image(s) missing" in err and name in err, err
    assert not (tmp_path / "list.json").exists()


def test_make_datalist_prints_each_class_with_its_count(tmp_path, capsys) -> None:
    """A wrong class (a typo, a folder of masks) shows in the command's own output, not later in a bundle."""
    from tests.data.test_downstream import _class_folders, write_stub

    _class_folders(tmp_path / "data", per_class=5, classes=("benign", "malignant", "normal"))
    write_stub(tmp_path / "data" / "normal" / "extra.png", "png")
    (tmp_path / "data" / "benign" / "cut.png").write_bytes(b"garbage")  # no picture: not counted, nor listed
    main(["make-datalist", "folder", str(tmp_path / "data"), str(tmp_path / "list.json"), "--folds", "3"])
    assert "classes: benign 5, malignant 5, normal 6" in capsys.readouterr().out


@pytest.mark.parametrize("multiclass, expected", [
    # each image's class: 1..6 in train_cls.txt, 7 and 8 in val_cls.txt, as the tests' MMOTU-2D stand-in lists them
    (True, "classes: background, chocolate cyst 1, serous cystadenoma 1, teratoma 1, theca cell tumour 1, "
           "simple cyst 1, normal ovary 1, mucinous cystadenoma 1, high-grade serous cystadenocarcinoma 1"),
    (False, "classes: background, ovarian tumour"),  # one lesion class: every image's masks are of it
])
def test_make_datalist_counts_the_images_of_each_segmentation_class(multiclass, expected, tmp_path, capsys) -> None:
    """Multi-class masks listed the class names alone, so a class missing from the set did not show."""
    from tests.data.test_segmentation import make_mmotu_segmentation

    root = make_mmotu_segmentation(tmp_path / "OTU_2d")
    flags = ["--multiclass", "true"] if multiclass else []
    main(["make-datalist", "mmotu-seg", str(root), str(tmp_path / "list.json"), *flags])
    assert expected in capsys.readouterr().out


def test_make_datalist_names_labelled_cine_loops_read_by_their_first_frame(tmp_path, capsys, caplog) -> None:
    """A class folder of multi-frame DICOM loops trains on each loop's first frame: the command says so, once."""
    from monai_ext.io.writers import write_dicom_frames
    from tests.data.test_downstream import _class_folders

    _class_folders(tmp_path / "data", per_class=5, classes=("benign", "malignant"))
    write_dicom_frames(np.full((4, 16, 16), 90, np.uint8), tmp_path / "data" / "benign" / "loop.dcm")
    with caplog.at_level("WARNING", logger="monai_ext.data.datalists"):
        main(["make-datalist", "folder", str(tmp_path / "data"), str(tmp_path / "list.json"), "--folds", "3"])
    said = [r.getMessage() for r in caplog.records if "several frames" in r.getMessage()]
    assert len(said) == 1 and "'loop.dcm': 4 frames" in said[0] and "1 of 11 image(s)" in said[0], said


@pytest.mark.parametrize("args, message", [
    # a generated protocol reads no --root: it would have benchmarked generated images instead of the user's data
    (["cross-validate", "synthetic", "{tmp}/cv", "--root", "{tmp}/root", "--methods", "random"],
     "protocol 'synthetic' is generated into --cache_dir and reads no --root (got '{tmp}/root')"),
    (["cross-validate", "subtle", "{tmp}/cv", "--init_checkpoint", "{tmp}/nope.pt", "--methods", "random"],
     "--init_checkpoint '{tmp}/nope.pt' is given but no start uses it"),
    # refused before the CNN start trains a whole fold (it ignores both)
    (["cross-validate", "synthetic", "{tmp}/cv", "--methods", "cnn,random", "--arch", "foo"],
     "--arch 'foo' is no architecture the bundles build"),
    (["cross-validate", "synthetic", "{tmp}/cv", "--methods", "cnn,random", "--image_size", "100"],
     "--image_size must be a whole multiple of the 16-pixel patch (such as 224), got 100"),
])
def test_settings_a_run_would_ignore_or_refuse_late_are_refused_first(args, message, tmp_path, capsys):
    code, err = run_main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "cv").exists()


def test_an_archive_of_which_nothing_is_kept_fails_naming_why(tmp_path, capsys) -> None:
    """Every file unreadable ended with exit code 0 and an empty cache; pretraining refused it only later."""
    folder = tmp_path / "root" / "set"
    folder.mkdir(parents=True)
    (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "empty.dcm").write_bytes(b"")
    code, err = run_main(["prepare-corpus", str(tmp_path / "root"), "--out", str(tmp_path / "cache")], capsys)
    lines = [line for line in err.strip().splitlines() if "ingest (chunks)" not in line]  # less the progress bar
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("monai_ext prepare-corpus: no frame was kept of 0 read (2 file(s) skipped; first "
                               "skipped: set/"), lines[0]
    assert lines[0].endswith(f"see {tmp_path / 'cache'}/report.json")
    assert (tmp_path / "cache" / "report.json").is_file()  # the reasons are written first


def test_ctrl_c_says_what_was_kept_and_how_to_resume(dataset, tmp_path, capsys, monkeypatch) -> None:
    """Ctrl-C printed a KeyboardInterrupt traceback from the process pool's waiter, and no hint."""
    import monai_ext.data.corpus

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(monai_ext.data.corpus, "prepare_corpus", interrupted)
    code, err = run_main(["prepare-corpus", str(dataset), "--out", str(tmp_path / "cache")], capsys)
    assert code == 130 and err == ("monai_ext prepare-corpus: interrupted; the chunks already written are kept: rerun "
                                   "the same command to resume\n")


def _raise_in_monai_ext() -> None:
    """A user's mistake as validation raises it (inside monai_ext, so the CLI counts it as one)."""
    from monai_ext.apps.crossval import check_folds
    from monai_ext.data.downstream import Protocol

    check_folds(Protocol("toy", ["a", "b"], []), [9])


def _out_of_memory() -> None:
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _stand_in_cross_validation(tmp_path, monkeypatch, run) -> tuple[list[str], str, str]:
    """cross-validate with its runner replaced by ``run``: (argv, what it keeps, the runner's failure line)."""
    import monai_ext.apps.crossval as crossval

    monkeypatch.setattr(crossval, "protocol_by_name", lambda *args, **kwargs: "protocol")
    monkeypatch.setattr(crossval, "cross_validate", run)
    return (["cross-validate", "synthetic", str(tmp_path / "cv"), "--methods", "random"], "folds",
            "random fold 1 failed: what went wrong; done and kept: random fold 0; rerun with --resume true to continue")


def _stand_in_label_efficiency(tmp_path, monkeypatch, run) -> tuple[list[str], str, str]:
    """label-efficiency with its curve replaced by ``run``: (argv, what it keeps, the curve's failure line)."""
    import monai_ext.apps.crossval as crossval
    import monai_ext.apps.label_efficiency as le

    monkeypatch.setattr(crossval, "check_run_inputs", lambda *args, **kwargs: None)
    monkeypatch.setattr(le, "curve_protocol", lambda *args, **kwargs: "protocol")
    monkeypatch.setattr(le, "label_efficiency", run)
    return (["label-efficiency", str(tmp_path / "le"), str(tmp_path / "start.pt")], "runs",
            "run n2/random/rep0 failed: what went wrong; done and kept: run n2/pretrained/rep0; rerun with --resume "
            "true to continue")


@pytest.mark.parametrize("stand_in", [_stand_in_cross_validation, _stand_in_label_efficiency])
@pytest.mark.parametrize("inner, code, lines", [
    (_out_of_memory, 1, None),          # a fault: its traceback, then the one line
    (_raise_in_monai_ext, 2, 1),        # a user's mistake: the one line alone
    (_ctrl_c, 130, 1),
])
def test_a_runner_that_fails_or_is_stopped_says_what_is_kept_and_how_to_continue(stand_in, inner, code, lines,
                                                                                  tmp_path, monkeypatch,
                                                                                  capsys) -> None:
    """A fold's (or a curve's run's) exception was a raw traceback naming neither start nor fold; Ctrl-C did not say
    that finished folds (runs) are kept or that --resume true continues."""
    import monai_ext.apps.crossval as crossval

    failure: list[str] = []

    def fake_run(*args, **kwargs):
        try:
            inner()
        except Exception as e:
            raise crossval.FoldFailed(failure[0]) from e

    monkeypatch.delenv("MONAI_EXT_TRACEBACK", raising=False)
    argv, kept, line = stand_in(tmp_path, monkeypatch, fake_run)
    failure.append(line)
    got, err = run_main(argv, capsys)
    said = err.strip().splitlines()
    assert got == code and (lines is None or len(said) == lines), err
    if code == 130:
        assert said[-1] == (f"monai_ext {argv[0]}: interrupted; the {kept} already finished are kept: rerun the "
                            "same command with --resume true to continue")
    else:
        assert said[-1] == f"monai_ext {argv[0]}: {line}"
    assert ("Traceback" in err) is (code == 1)


def test_convert_checkpoint_takes_the_files_record_and_refuses_another_kind(tmp_path, capsys) -> None:
    """A tiny MAE needed --arch and --img_size restated (the default ViT-B refused it naming only head counts); a
    classifier gave a 1,200-character list of keys that did not match."""
    from monai_ext.networks.classifier import build_classifier

    tiny = "mae_vit_tiny_patch16_dec128d2b"
    gray = build_mae(tiny, img_size=64, in_chans=1, norm_pix_loss=True)  # a gray MAE; its config names the arch only
    trained = {"arch": tiny, "image_size": 64, "dataset_dir": "/data/cache", "val_fraction": 0.1, "data_seed": 7}
    save_model_checkpoint(tmp_path / "mae.pt", gray, "mae", trained)
    main(["convert-checkpoint", str(tmp_path / "mae.pt"), str(tmp_path / "converted.pt")])
    record = torch.load(tmp_path / "converted.pt", weights_only=True)["arch"]
    # the training record stays: evaluate of the converted file ran on the synthetic default, with another seed
    assert record["config"] == {**trained, "converted_from": "mae.pt"}
    assert {key: record["arch_args"][key] for key in ("img_size", "in_chans", "norm_pix_loss")} == {
        "img_size": 64, "in_chans": 1, "norm_pix_loss": True}  # it became a 3-channel 224-px MAE
    save_model_checkpoint(tmp_path / "cls.pt", build_classifier(tiny, 2, img_size=64), "classifier", {"arch": tiny})
    code, err = run_main(["convert-checkpoint", str(tmp_path / "cls.pt"), str(tmp_path / "x.pt")], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a 'classifier' checkpoint; convert-checkpoint converts MAE" in err


TINY_MAE = "mae_vit_tiny_patch16_dec128d2b"


@pytest.mark.parametrize("args, message", [
    ({"model": "mae_vit_huge_patch14"}, "its args name model 'mae_vit_huge_patch14', which is not a registered "
                                        "architecture"),
    ({"input_size": "224"}, "its args have input_size '224', not a whole number of pixels; give --img_size"),
    # another patch size: a reshape's RuntimeError traceback, where the key and the --arch to give are named now
    ({}, "key 'patch_embed.proj.weight' has shape (192, 3, 8, 8), the model expects (192, 3, 16, 16): the file's "
         "patches are (8, 8) pixels, the model's (16, 16); give the --arch of that patch size"),
])
def test_convert_checkpoint_refuses_a_facebook_file_it_cannot_build_in_one_line(args, message, tmp_path,
                                                                                capsys) -> None:
    import argparse

    from monai_ext.networks.mae import MaskedAutoencoderViT

    mae = MaskedAutoencoderViT(img_size=32, patch_size=8, embed_dim=192, depth=1, num_heads=3, decoder_embed_dim=128,
                               decoder_depth=1, decoder_num_heads=4)
    torch.save({"model": mae.state_dict(), "args": argparse.Namespace(**args)}, tmp_path / "fb.pth")
    flags = ["--arch", TINY_MAE] if not args else []
    code, err = run_main(["convert-checkpoint", str(tmp_path / "fb.pth"), str(tmp_path / "out.pt"), *flags], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_describes_every_argument_in_whole_sentences(name) -> None:
    """fire's help ends an argument's description where a wrapped line reads like a new ``name:`` entry
    (``busbra-seg: 5 or 10``), so ``--num_folds`` stopped mid-sentence; and an Args entry naming four arguments at
    once left each without one."""
    import fire.docstrings

    command = inspect.unwrap(cli.COMMANDS[name])
    described = {arg.name: (arg.description or "").strip() for arg in fire.docstrings.parse(command.__doc__).args or ()}
    for parameter in inspect.signature(command).parameters:
        assert described.get(parameter, "").endswith((".", ")")), (name, parameter, described.get(parameter))


def test_prepare_corpus_defaults_to_the_corpus_dedup_threshold() -> None:
    """The command line spells its default out (it imports no corpus code to start): it must stay the corpus's."""
    from monai_ext.data.corpus import DEDUP_THRESHOLD

    default = inspect.signature(inspect.unwrap(cli.COMMANDS["prepare-corpus"])).parameters["dedup_threshold"].default
    assert default == DEDUP_THRESHOLD


@pytest.mark.parametrize("class_names, told", [
    (["benign", "malignant"], "output pred (N, 2) logits for ['benign', 'malignant']"),
    # it printed "(N, 0) logits for None" for a graph of 2 logits
    ([], "output pred (N, 2) logits (the checkpoint records no class names)"),
])
def test_export_onnx_tells_the_logits_it_wrote(class_names, told, tmp_path, capsys) -> None:
    from tests.networks.test_export import _tiny_classifier_checkpoint

    checkpoint = _tiny_classifier_checkpoint(tmp_path / "model.pt", class_names)
    main(["export-onnx", str(checkpoint), str(tmp_path / "model.onnx")])
    assert told in capsys.readouterr().out


@pytest.mark.parametrize("blocked", [["onnx"], ["onnxscript"], ["onnxruntime"], ["onnx", "onnxruntime"]])
def test_export_onnx_without_its_packages_is_one_line_naming_what_to_install(blocked, tmp_path, monkeypatch,
                                                                             capsys) -> None:
    """Without onnx, onnxscript or onnxruntime export-onnx ended in an ImportError's traceback."""
    from tests.networks.test_export import _tiny_classifier_checkpoint

    checkpoint = _tiny_classifier_checkpoint(tmp_path / "model.pt", ["benign", "malignant"])
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # import then raises ImportError, as where it is not installed
    code, err = run_main(["export-onnx", str(checkpoint), str(tmp_path / "model.onnx")], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("monai_ext export-onnx: ONNX export needs ") and "Traceback" not in err
    assert err.rstrip().endswith(f"pip install {' '.join(blocked)}"), err
    assert not (tmp_path / "model.onnx").exists()
