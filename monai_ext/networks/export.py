"""ONNX export of a trained network, with a check of the exported graph against the eager model (onnxruntime)."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_ext.io.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

#: What ONNX export needs beyond torch, none of them a dependency of this project: onnx (torch's exporter writes its
#: model proto), onnxscript (torch's dynamo exporter converts with it) and onnxruntime (the exported file's check).
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


class MissingPackagesError(ImportError):
    """Packages ONNX export needs are not installed; the message names them and the ``pip install`` line."""


def require_export_packages(packages: Sequence[str] = EXPORT_PACKAGES) -> None:
    """Import each of ``packages``, before any work: without them an export ended in a traceback from deep inside
    torch's exporter, and only after the checkpoint was read.

    Raises:
        MissingPackagesError: naming each package that does not import and the command that installs them.
    """
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingPackagesError(f"ONNX export needs {', '.join(repr(name) for name in missing)}, not installed in "
                                   f"this environment: pip install {' '.join(missing)}")


def export_onnx(
    model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], opset: int = 18, dynamic_batch: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``model`` (in eval mode, on the CPU) to an ONNX file with torch's exporter, written atomically.

    Args:
        model: a network taking one image batch (N, C, H, W) and returning one tensor.
        path: the ``.onnx`` file to write.
        input_shape: (N, C, H, W) of the example input; H and W stay fixed in the graph.
        opset: ONNX opset version.
        dynamic_batch: let the batch dimension vary (named "batch").
        metadata: text entries for the file's ``metadata_props`` (what a runtime reads with the model: its classes,
            its preprocessing).

    Returns:
        The written path. Input name "image", output name "pred".

    Raises:
        MissingPackagesError: onnx or onnxscript is not installed.
    """
    if len(input_shape) != 4 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"input_shape must be (N, C, H, W) with positive sizes, got {input_shape!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 1:
        raise ValueError(f"opset must be a positive integer, got {opset!r}")
    require_export_packages(EXPORT_PACKAGES[:2])  # the exporter's own; onnxruntime only checks the file
    import onnx  # an opset it does not know fails deep in a converter, with a traceback: checked below

    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be at most {onnx.defs.onnx_opset_version()} (the newest this onnx "
                         f"{onnx.__version__} knows), got {opset!r}")
    with evaluated_on_cpu(model):
        program = _exported_program(model, input_shape, opset, dynamic_batch)
    # torch's exporter falls back to its own opset when converting down fails (it logs the error and goes on): a
    # file for an older runtime must be refused, not written at another opset
    written = {entry.domain: entry.version for entry in program.model_proto.opset_import}.get("", None)
    if written != opset:
        raise ValueError(f"the model could not be exported at opset {opset} (torch wrote opset {written}); choose "
                         f"opset {written} or a torch version that converts to {opset}")
    proto = program.model_proto  # built anew on each access: the entries go on this one, which is written
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    logger.info("ONNX model written to %s (opset %d, input %s)", path, opset, tuple(int(s) for s in input_shape[1:]))
    return path


@contextlib.contextmanager
def evaluated_on_cpu(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode on the CPU for an export or a comparison, given back with each module's mode and on the
    device it came in (a frozen, eval-mode encoder inside a training model stays in eval mode): an API user exporting
    mid-session had a CUDA model moved to the CPU and left in eval mode."""
    modes = [(module, module.training) for module in model.modules()]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        yield model.eval().cpu()
    finally:
        model.to(device)
        for module, training in modes:
            module.training = training


def _exported_program(model: nn.Module, input_shape: Sequence[int], opset: int, dynamic_batch: bool) -> Any:
    """torch's ONNX program of ``model`` (in eval mode on the CPU) for an example input of ``input_shape``."""
    example = torch.zeros(*(int(s) for s in input_shape))
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    if dynamic_batch and example.shape[0] == 1:
        example = example.expand(2, *example.shape[1:]).contiguous()  # torch.export specialises a size-1 dimension
    # onnxscript logs a failed conversion to an older opset with its whole traceback; it is refused below in one line
    converter_log = logging.getLogger("onnxscript.version_converter")
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            return torch.onnx.export(model, (example,), input_names=["image"], output_names=["pred"],
                                     opset_version=opset, dynamic_shapes=dynamic_shapes, dynamo=True)
    finally:
        converter_log.setLevel(level)


def onnx_max_difference(model: nn.Module, path: str | os.PathLike, images: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's outputs for ``path`` and the eager ``model``'s.

    Args:
        model: the eager network the file was exported from.
        path: the ``.onnx`` file.
        images: (N, C, H, W) float32 inputs.
    """
    require_export_packages(EXPORT_PACKAGES[2:])
    import onnxruntime as ort  # a test / export-time dependency only

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: images.float().numpy()})
    with torch.no_grad(), evaluated_on_cpu(model):
        eager = model(images.float()).numpy()
    if onnx_out.shape != eager.shape:
        raise ValueError(f"ONNX output shape {onnx_out.shape} differs from the eager output shape {eager.shape}")
    return float(np.abs(onnx_out - eager).max())


def export_checkpoint_onnx(
    checkpoint: str | os.PathLike, path: str | os.PathLike, opset: int = 18, tolerance: float = 1e-4, seed: int = 0
) -> dict[str, object]:
    """Export a classifier checkpoint of this project to ONNX and check the file against the eager model.

    Args:
        checkpoint: a classification-bundle ``models/model.pt`` (it records its architecture and class names).
        path: the ``.onnx`` file to write (input "image" (N, C, H, W), output "pred" (N, K) logits; N dynamic).
        opset: ONNX opset version.
        tolerance: largest allowed absolute difference between onnxruntime's and the eager logits.
        seed: seed of the random check images.

    Returns:
        ``{"path", "input_shape" (C, H, W), "class_names", "max_difference"}``.

    Raises:
        CheckpointError: not a classifier checkpoint of this project.
        MissingPackagesError: onnx, onnxscript or onnxruntime is not installed (before the checkpoint is read).
        ValueError: a negative ``tolerance``; onnxruntime's outputs differ from the eager model's by more than
            ``tolerance`` (then nothing is written at ``path``).
        IsADirectoryError: ``path`` is a folder.
        ValueError: ``path`` is the checkpoint (by any name or link).
    """
    from monai_ext.io.checkpoints import CheckpointError, read_checkpoint
    from monai_ext.networks.checkpoints import build_from_checkpoint

    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"ONNX output {str(path)!r} is a folder; give the .onnx file to write")
    if path.exists() and Path(checkpoint).exists() and path.samefile(checkpoint):
        # a slip in the shell (the .pt left as the output) would replace a trained model by its ONNX export
        raise ValueError(f"ONNX output {str(path)!r} is the checkpoint itself; give another file, such as "
                         f"{str(path.with_suffix('.onnx'))!r}")
    require_export_packages()  # before the checkpoint is read: without them nothing can be written
    content = read_checkpoint(checkpoint)
    kind = (content.get("arch") or {}).get("kind") if isinstance(content, dict) else None
    if kind != "classifier":
        held = f"holds a {kind!r} model" if kind else "has no architecture record (bare weights)"
        raise CheckpointError(f"{str(checkpoint)!r} {held}; ONNX export takes a classifier checkpoint "
                              "(the classification bundle's models/model.pt)")
    model = build_from_checkpoint(content, str(checkpoint)).eval()
    size = model.arch_args["img_size"]
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    shape = (model.arch_args["in_chans"], height, width)
    # exported beside the target and published only once checked: a file that failed its check is never left behind
    candidate = path.with_name(f".{path.stem[:40]}.unchecked.onnx")
    class_names = (content["arch"].get("config") or {}).get("class_names")
    metadata = onnx_metadata(model, class_names, Path(checkpoint))
    try:
        export_onnx(model, candidate, (2, *shape), opset, metadata=metadata)
        images = torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed))  # a batch size not exported
        difference = onnx_max_difference(model, candidate, images)
        if difference > tolerance:
            raise ValueError(f"{path}: onnxruntime differs from the eager model by {difference:.3g} > tolerance "
                             f"{tolerance:g}; nothing written")
        atomic_write_bytes(path, candidate.read_bytes())
    finally:
        candidate.unlink(missing_ok=True)
    return {"path": str(path), "input_shape": shape, "class_names": class_names,
            "num_classes": int(model.arch_args["num_classes"]), "max_difference": difference, "metadata": metadata}


def onnx_metadata(model: nn.Module, class_names: Sequence[str] | None, checkpoint: Path) -> dict[str, str]:
    """What a runtime needs beside the graph, as ONNX ``metadata_props`` (text; lists as JSON): the classes of the
    output logits in order, and the preprocessing the classification bundle's inference applies. A team deploying
    the ``.onnx`` alone could not tell which logit is which class, nor what input the network expects.

    Args:
        model: the classifier (its ``arch_args``: ``num_classes``, ``img_size``, ``in_chans``).
        class_names: the checkpoint's class names, or None where it records none (``[]`` then).
        checkpoint: the source file (its name and SHA-256 are recorded).
    """
    from monai_ext.io.checkpoints import sha256_of
    from monai_ext.networks.input_stats import input_stats

    mean, std = input_stats(int(model.arch_args["in_chans"]))
    size = model.arch_args["img_size"]
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return {
        "class_names": json.dumps(list(class_names or [])),  # [] where the checkpoint records none
        "num_classes": str(model.arch_args["num_classes"]),
        "input": f"image (N, {model.arch_args['in_chans']}, {height}, {width}) float32",
        "preprocessing": (f"gray display values scaled to [0, 1], resized to {height}x{width} by area, repeated to "
                          f"{model.arch_args['in_chans']} channel(s), then (x - mean) / std per channel"),
        "mean": json.dumps(mean), "std": json.dumps(std),
        "output": "pred (N, K) logits; softmax gives the class probabilities",
        "source_checkpoint": f"{checkpoint.name} sha256:{sha256_of(checkpoint)}",
    }
