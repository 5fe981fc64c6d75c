"""predict_mask_files: one mask per input, also when two inputs of a recursive folder share a file name."""

from __future__ import annotations

import json

import numpy as np
import torch

from monai_ext.engines.segmentation import predict_mask_files


class Threshold(torch.nn.Module):
    """Two-class logits: foreground where the pixel is bright. (N, 1, H, W) -> (N, 2, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x, x], dim=1)


def test_inputs_sharing_a_stem_get_their_own_masks(tmp_path):
    files = [str(tmp_path / "in" / "a" / "scan.dcm"), str(tmp_path / "in" / "b" / "scan.dcm"), "missing/other.png"]
    pixels = {files[0]: np.tile(np.linspace(-1, 1, 8, dtype=np.float32), (6, 1)), files[1]: -np.ones((6, 8), np.float32)}

    def load(item):
        if item["image"] not in pixels:
            raise FileNotFoundError(item["image"])
        return {"image": pixels[item["image"]][None]}

    result = predict_mask_files(Threshold(), files, load, lambda item: item, ["background", "lesion"], "cpu",
                                tmp_path / "out")
    masks = {path: entry["mask"] for path, entry in result["masks"].items()}
    assert len(set(masks.values())) == 2 and set(masks) == set(files[:2])
    assert [entry["pixels"]["lesion"] > 0 for entry in result["masks"].values()] == [True, False]
    assert "missing/other.png" in result["errors"]
    assert json.loads((tmp_path / "out" / "masks.json").read_text())["masks"] == result["masks"]
