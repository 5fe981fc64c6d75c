"""Writing this project's own model files (networks/checkpoints/save.py): they rebuild their model, are written
atomically, and their architecture record holds only readable values."""

from __future__ import annotations

import re

import pytest
import torch

from monai_ext.networks import checkpoints as ck
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.mae import MaskedAutoencoderViT
from tests.networks.checkpoints.helpers import TINY, TINY_ENC


@pytest.mark.parametrize("kind, model", [("mae", MaskedAutoencoderViT(**TINY)),
                                         ("classifier", ViTClassifier(4, **TINY_ENC))])
def test_own_checkpoint_rebuilds_the_model(tmp_path, kind, model) -> None:
    path = tmp_path / "model.pt"
    ck.save_model_checkpoint(path, model.eval(), kind, config={"recipe": "ultrasound"})
    rebuilt = ck.build_from_checkpoint(path).eval()
    assert type(rebuilt) is type(model) and rebuilt.arch_args == model.arch_args
    x = torch.randn(1, 3, 32, 32)
    if kind == "mae":
        noise = torch.rand(1, 16)
        torch.testing.assert_close(rebuilt(x, noise=noise)[1], model(x, noise=noise)[1])
    else:
        torch.testing.assert_close(rebuilt(x), model(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_record_with_paths_and_numpy_numbers_reads_back(tmp_path) -> None:
    """A ``Path`` or a numpy scalar in the config was written, and the file's own reader then refused it as pickling
    objects outside the allow-list."""
    from pathlib import Path

    import numpy as np

    path = tmp_path / "m.pt"
    config = {"data_root": Path("/data"), "lr": np.float64(1e-3), "sizes": (np.int64(2), 3), "nested": {"k": None}}
    ck.save_model_checkpoint(path, MaskedAutoencoderViT(**TINY), "mae", config)
    assert ck.read_checkpoint(path)["arch"]["config"] == {"data_root": "/data", "lr": 1e-3, "sizes": [2, 3],
                                                          "nested": {"k": None}}
    with pytest.raises(ValueError, match=re.escape("config.hook is a builtin_function_or_method, which a checkpoint cannot hold")):
        ck.save_model_checkpoint(path, MaskedAutoencoderViT(**TINY), "mae", {"hook": len})


@pytest.mark.parametrize("wrap", ["compiled", "data_parallel"])
def test_a_wrapped_model_is_saved_as_the_network_it_wraps(tmp_path, wrap: str) -> None:
    """A DataParallel model was refused ("must carry arch_args; DataParallel does not"), and a compiled one recorded
    torch's ``OptimizedModule`` as its network."""
    model = ViTClassifier(2, **TINY_ENC).eval()
    wrapped = torch.compile(model, backend="eager") if wrap == "compiled" else torch.nn.DataParallel(model)
    path = tmp_path / "model.pt"
    ck.save_model_checkpoint(path, wrapped, "classifier")
    record = ck.read_checkpoint(path)["arch"]
    assert record["network"] == "monai_ext.networks.classifier.ViTClassifier"
    rebuilt = ck.build_from_checkpoint(path).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))
