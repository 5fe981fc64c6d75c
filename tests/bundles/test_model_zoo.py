"""MONAI model-zoo conformance of both bundles, run with MONAI's own bundle tools in a subprocess as a user would.

The standalone inference configs must verify before any checkpoint exists (default ViT-B at 224), follow a
checkpoint's architecture record once it does, export to TorchScript with ``ckpt_export`` and (classifier) to ONNX,
each matching the eager network within 1e-4.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose
from PIL import Image

from monai_ext.io.writers import write_dicom
from monai_ext.networks import build_classifier
from monai_ext.networks.checkpoints import build_from_checkpoint, save_model_checkpoint
from monai_ext.networks.mae import build_mae
from monai_ext.networks.reconstruction import build_mae_reconstructor
from monai_ext.networks.segmentation import build_segmenter
from monai_ext.transforms.loading import LoadUltrasoundImage
from tests.bundles.helpers import REPO, bundle_command, readme_bundle_commands
from tests.warm_python import run_python

pytestmark = pytest.mark.slow
BUNDLES = ("usf_mae_pretrain", "usf_mae_classify")
#: The bundles whose README documents a TorchScript export (the segmenter's inference.yaml needs a checkpoint)
EXPORTED = (*BUNDLES, "usf_mae_segment")
TINY = "mae_vit_tiny_patch16_dec128d2b"
CLASS_NAMES = ["cyst", "solid", "mixed"]  # not the default pair: the record must win


def configs(bundle: str) -> Path:
    return REPO / "bundles" / bundle / "configs"


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = run_python(cmd, cwd=REPO, timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Weights far from their initialisation (a new head is near zero), so that output comparisons mean something."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(module_tmp) -> dict[str, Path]:
    """A tiny 64-px checkpoint of each bundle, written as the bundles write them (weights + architecture record)."""
    root = module_tmp("zoo_models")
    (root / "usf_mae_pretrain").mkdir()
    (root / "usf_mae_classify").mkdir()
    mae = randomised(build_mae(TINY, img_size=64))
    save_model_checkpoint(root / "usf_mae_pretrain" / "model.pt", mae, "mae", {"arch": TINY, "image_size": 64})
    classifier = randomised(build_classifier(TINY, len(CLASS_NAMES), img_size=64))
    save_model_checkpoint(root / "usf_mae_classify" / "model.pt", classifier, "classifier",
                          {"arch": TINY, "class_names": CLASS_NAMES, "image_size": 64})
    (root / "usf_mae_segment").mkdir()
    segmenter = randomised(build_segmenter(TINY, 2, img_size=64, feature_size=8))
    save_model_checkpoint(root / "usf_mae_segment" / "model.pt", segmenter, "segmenter",
                          {"arch": TINY, "class_names": ["background", "lesion"], "image_size": 64})
    return {name: root / name / "model.pt" for name in EXPORTED}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_verifies_against_the_offline_schema(bundle: str) -> None:
    result = run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file",
                  str(configs(bundle) / "metadata.json"), "--filepath", str(REPO / "bundles" / "meta_schema.json")])
    assert "metadata is verified with no error" in result.stdout + result.stderr


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_config_verifies_net_in_out_before_any_checkpoint(bundle: str, tmp_path) -> None:
    """The default network (ViT-B, 224 px) against metadata.json, with no model.pt anywhere."""
    cmd = bundle_command("verify_net_in_out", [str(configs(bundle) / "inference.yaml")],
                         {"meta_file": str(configs(bundle) / "metadata.json"), "bundle_root": str(tmp_path)})
    cmd.insert(4, "network_def")
    result = run(cmd)
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


@pytest.mark.parametrize("bundle", BUNDLES)
def test_torchscript_export_of_the_inference_network_matches_eager(bundle: str, checkpoints, tmp_path) -> None:
    ckpt = checkpoints[bundle]
    overrides = {"ckpt_dir": str(ckpt.parent), "filepath": str(tmp_path / "model.ts"), "ckpt_file": str(ckpt),
                 "key_in_ckpt": "model", "meta_file": str(configs(bundle) / "metadata.json")}
    if bundle == "usf_mae_pretrain":  # the MAE's masking code traces (with its fixed mask) but does not script
        overrides.update(use_trace=True, input_shape=[1, 3, 64, 64])
    cmd = bundle_command("ckpt_export", [str(configs(bundle) / "inference.yaml")], overrides)
    cmd.insert(4, "network_def")
    run(cmd)
    exported = torch.jit.load(str(tmp_path / "model.ts"))
    if bundle == "usf_mae_classify":
        eager = build_from_checkpoint(ckpt).eval()
        expected_shape = (3, len(CLASS_NAMES))
    else:
        eager = build_mae_reconstructor(TINY, img_size=64).eval()
        eager.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
        expected_shape = (3, 3, 64, 64)
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference, output = eager(images), exported(images)
    assert tuple(output.shape) == expected_shape
    assert reference.abs().max() > 1e-2  # a comparison of near-zero outputs would prove nothing
    torch.testing.assert_close(output, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("bundle", EXPORTED)
def test_the_readme_torchscript_export_command_matches_eager(bundle: str, checkpoints, tmp_path) -> None:
    """Each README's ckpt_export command as written, for a 64-px model.pt outside models/ (with the ``--ckpt_path``
    the READMEs say to add, and the pretraining README's ``--input_shape`` at the trained size). The segment README
    had no export command, though its inference.yaml exports."""
    ckpt, exported_file = checkpoints[bundle], tmp_path / "model.ts"
    (command,) = [args for args in readme_bundle_commands(bundle) if args[0] == "ckpt_export"]
    models = f"bundles/{bundle}/models/"
    command = [arg.replace(models + "model.pt", str(ckpt)).replace(models + "model.ts", str(exported_file))
               .replace("[1, 3, 224, 224]", "[1, 3, 64, 64]") for arg in command]
    run([sys.executable, "-m", "monai.bundle", *command, "--ckpt_path", str(ckpt)])
    exported = torch.jit.load(str(exported_file))
    if bundle == "usf_mae_pretrain":
        eager = build_mae_reconstructor(TINY, img_size=64).eval()
        eager.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
    else:
        eager = build_from_checkpoint(ckpt).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference, output = eager(images), exported(images)
    assert reference.abs().max() > 1e-2  # a comparison of near-zero outputs would prove nothing
    torch.testing.assert_close(output, reference, atol=1e-4, rtol=0)


def test_onnx_export_command_matches_eager_through_onnxruntime(checkpoints, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    ckpt, out = checkpoints["usf_mae_classify"], tmp_path / "model.onnx"
    result = run([sys.executable, "-m", "monai_ext", "export-onnx", str(ckpt), str(out)])
    assert "onnxruntime matches eager" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    eager = build_from_checkpoint(ckpt).eval()
    for batch in (1, 5):  # the batch dimension is dynamic
        images = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        (logits,) = session.run(None, {"image": images.numpy()})
        with torch.no_grad():
            reference = eager(images).numpy()
        assert logits.shape == (batch, len(CLASS_NAMES))
        assert np.abs(reference).max() > 1e-2
        np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)


def test_onnx_export_of_a_pretraining_checkpoint_is_a_one_line_user_error(checkpoints, tmp_path) -> None:
    result = run_python([sys.executable, "-m", "monai_ext", "export-onnx", str(checkpoints["usf_mae_pretrain"]),
                         str(tmp_path / "x.onnx")], cwd=REPO)
    assert result.returncode == 2 and "holds a 'mae' model" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.onnx").exists()


def test_classifier_inference_follows_the_checkpoint_record(checkpoints, tmp_path) -> None:
    """arch, image size and class names from model.pt: no --arch / --image_size / class names on the command line."""
    image = tmp_path / "in" / "scan.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (70, 90), np.uint8))
    cmd = bundle_command("run", [str(configs("usf_mae_classify") / "inference.yaml")],
                         {"ckpt_dir": str(checkpoints["usf_mae_classify"].parent), "output_dir": str(tmp_path / "out"),
                          "input_files": [str(image)]})
    run(cmd)
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert result["class_names"] == CLASS_NAMES
    assert result["weights"] == str(checkpoints["usf_mae_classify"].resolve())
    probabilities = result["predictions"][str(image)]["probabilities"]
    eager = build_from_checkpoint(checkpoints["usf_mae_classify"]).eval()
    parser = ConfigParser()
    parser.read_config(str(configs("usf_mae_classify") / "inference.yaml"))
    parser.update({"ckpt_dir": str(checkpoints["usf_mae_classify"].parent)})
    tensor = parser.get_parsed_content("preprocessing")({"image": str(image)})["image"][None]
    with torch.no_grad():
        expected = torch.softmax(eager(torch.as_tensor(tensor).float()), dim=1)[0]
    assert list(probabilities.values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_classifier_inference_before_training_refuses_random_weights_unless_asked(tmp_path) -> None:
    """It predicted with random weights after one warning line and ended well: an archive labelled with noise."""
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 256, (64, 64), np.uint8))
    overrides = {"bundle_root": str(tmp_path), "output_dir": str(tmp_path / "out"), "arch": TINY, "image_size": 64,
                 "input_files": [str(image)]}
    refused = run_python(bundle_command("run", [str(configs("usf_mae_classify") / "inference.yaml")], overrides),
                         cwd=REPO, timeout=300)
    assert refused.returncode == 2 and "its predictions would be random; give --ckpt_path" in refused.stderr
    assert not (tmp_path / "out" / "predictions.json").exists()
    cmd = bundle_command("run", [str(configs("usf_mae_classify") / "inference.yaml")],
                         {**overrides, "allow_random_weights": True})
    result = run(cmd)
    assert "RANDOM WEIGHTS" in result.stdout + result.stderr
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert predictions["class_names"] == ["benign", "malignant"] and predictions["weights"] == "random"


def _preprocessing(config: Path, key: str, bundle: str, image_size: int = 64):
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.update({"bundle_root": str(REPO / "bundles" / bundle), "image_size": image_size})
    return parser.get_parsed_content(key)


@pytest.mark.parametrize("bundle,suffix", [("usf_mae_pretrain", ".png"), ("usf_mae_classify", ".png"),
                                           ("usf_mae_classify", ".dcm")])
def test_inference_preprocessing_is_training_validation_preprocessing(bundle: str, suffix: str, tmp_path) -> None:
    """The standalone config restates train.yaml's validation reading and normalisation; they must not drift."""
    pixels = np.random.default_rng(2).integers(0, 256, (96, 128), np.uint8)
    path = tmp_path / f"scan{suffix}"
    if suffix == ".dcm":
        write_dicom(pixels, path)
    else:
        cv2.imwrite(str(path), pixels)
    train = _preprocessing(configs(bundle) / "train.yaml", "validate#preprocessing", bundle)
    infer = _preprocessing(configs(bundle) / "inference.yaml", "preprocessing", bundle)
    expected = torch.as_tensor(train({"image": str(path)})["image"])
    actual = torch.as_tensor(infer({"image": str(path)})["image"])
    assert actual.shape == (3, 64, 64)
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def _awkward_picture(kind: str, path: Path) -> None:
    """A gray screen saved as a palette PNG, a CMYK JPEG, a float TIFF in [0, 255] or a 16-bit PNG."""
    gray = np.random.default_rng(3).integers(0, 256, (40, 56), np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if kind == "palette":
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path, quality=100)
    elif kind == "float":
        Image.fromarray(gray.astype(np.float32)).save(path)
    else:
        cv2.imwrite(str(path), gray.astype(np.uint16) * 257)


@pytest.mark.parametrize("config,key", [("train.yaml", "load_transforms"), ("inference.yaml", "preprocessing")])
@pytest.mark.parametrize("kind,suffix", [("palette", ".png"), ("cmyk", ".jpg"), ("float", ".tif"), ("16bit", ".png")])
def test_pretraining_reads_pictures_as_the_project_reader_does(config, key, kind, suffix, tmp_path) -> None:
    """MONAI's PILReader gives a palette PNG's indices (nearly black), CMYK ink and raw floats (255 times too
    bright); the pretraining bundle reads them as the classification bundle's reader does."""
    path = tmp_path / f"screen{suffix}"
    _awkward_picture(kind, path)
    parser = ConfigParser()
    parser.read_config(str(configs("usf_mae_pretrain") / config))
    parser.update({"bundle_root": str(REPO / "bundles" / "usf_mae_pretrain"), "image_size": 40, "in_channels": 1})
    if key == "load_transforms":
        parser["dataset_dir"] = str(tmp_path)  # a picture folder, not a corpus cache
    read = parser.get_parsed_content(key)
    read = read if callable(read) else Compose(read)
    actual = torch.as_tensor(np.asarray(read({"image": str(path)})["image"]))
    reference = LoadUltrasoundImage()(path)
    expected = torch.nn.functional.interpolate(torch.as_tensor(reference)[None], size=(40, 40), mode="area")[0]
    if key == "preprocessing":
        mean, std = parser.get_parsed_content("norm_stats")
        expected = (expected - torch.as_tensor(mean).view(-1, 1, 1)) / torch.as_tensor(std).view(-1, 1, 1)
    torch.testing.assert_close(actual.float(), expected.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bundle", ["usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment"])
def test_required_packages_name_this_project_and_the_readers_the_docs_promise(bundle: str) -> None:
    """No config of the bundles parses without this project's package, and DICOM (pydicom, its JPEG codecs), NIfTI
    (nibabel), NRRD/MHA (itk) and the figures (matplotlib) are read or drawn by every bundle: metadata.json named
    none of them (the pretraining bundle neither pydicom nor matplotlib), so an environment made from it could not
    run the bundle. Each listed package is installed in the environment the suite runs in."""
    import re
    from importlib.metadata import version

    required = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())[
        "required_packages_version"]
    # read without tomllib, which Python 3.10 (supported) lacks
    project = dict(re.findall(r'^(name|version) = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M))
    assert required.get(project["name"]) == project["version"]
    assert {"pydicom", "pylibjpeg", "nibabel", "itk-io", "matplotlib"} <= set(required)
    for name in required:
        version(name)  # PackageNotFoundError names a package listed but not installed
