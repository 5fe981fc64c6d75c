"""Validate 1, 3 and 7 images with each bundle's ``validate#evaluator``, as the training run does after an epoch.

    python tests/bundles/ddp_validation_worker.py OUT.json CACHE            # one process, train.yaml
    python -m torch.distributed.run --standalone --nproc_per_node N tests/bundles/ddp_validation_worker.py OUT.json CACHE
                                                                            # N ranks, train.yaml + multi_gpu_train.yaml

Every rank writes ``OUT.json`` with suffix ``.rank<r>``: ``{bundle: {n_images: {metric: value}}}``. Batches of 2, so
shards end in short batches; handlers are left out (only the metrics are compared). Under ``"unreadable_on_last_rank"``
the classification bundle validates 7 images of which the fourth is missing on the last rank only (a node whose copy
lacks a file; in one process, that rank is the only one). Under ``"usf_mae_classify_cnn"`` the classification bundle
validates 1, 3 and 7 images with cross-validate's ResNet-18 baseline, a BatchNorm network (DDP broadcasts its buffers
at the start of a forward, which a rank without images never joins).
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.utils import set_determinism

from monai_ext.apps.crossval import cnn_baseline_overrides
from monai_ext.engines.distributed import destroy_process_group, init_process_group, rank, world_size

REPO = Path(__file__).resolve().parents[2]
SIZES = (1, 3, 7)
COMMON = {"arch": "mae_vit_tiny_patch16_dec128d2b", "image_size": 32, "batch_size": 2, "num_workers": 0,
          "precision": "fp32", "validate#handlers": []}
BUNDLES = {
    # 32 synthetic frames, a quarter of them for validation: 8
    "usf_mae_pretrain": ({"num_synthetic": 32, "val_fraction": 0.25, "grid_images": 1},
                         {"validate#dataset#data": "$monai_ext.engines.mae.with_positions(@datalists['validation'][:{n}])"}),
    # 24 synthetic lesions; fold 0's validation and test parts together hold more than 7
    "usf_mae_classify": ({"synthetic_per_class": 12},
                         {"validate#datalist": "$(@split['validation'] + @split['test'])[:{n}]"}),
    # 20 simulated lesions: fold 0's 3 validation and 4 test images
    "usf_mae_segment": ({"synthetic_images": 20, "max_train": 14, "feature_size": 8},
                        {"validate#datalist": "$(@split['validation'] + @split['test'])[:{n}]"}),
}


#: The fourth of 7 validation images named as a file that does not exist, on the last rank alone.
UNREADABLE_ON_LAST_RANK = {"validate#datalist": (
    "$[dict(item, image='/nonexistent/lost_on_this_node.png') if i == 3 and monai_ext.engines.distributed.rank() == "
    "monai_ext.engines.distributed.world_size() - 1 else item for i, item in enumerate((@split['validation'] + "
    "@split['test'])[:7])]")}


def evaluate(bundle: str, cache: str, n: int, distributed: bool, subset: dict[str, str] | None = None,
             network: dict[str, object] | None = None) -> dict[str, float]:
    configs = REPO / "bundles" / bundle / "configs"
    files = [str(configs / "train.yaml")] + ([str(configs / "multi_gpu_train.yaml")] if distributed else [])
    parser = ConfigParser()
    parser.read_config(files)
    extra, default_subset = BUNDLES[bundle]
    subset = default_subset if subset is None else subset
    parser.update({**COMMON, **extra, "cache_dir": cache, "ckpt_dir": cache + "/models",
                   "output_dir": cache + "/eval", **{k: v.replace("{n}", str(n)) for k, v in subset.items()},
                   **(network or {})})
    set_determinism(seed=0)  # the same random weights in every process (DDP also broadcasts rank 0's)
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    metrics = {k: float(v) for k, v in evaluator.state.metrics.items() if isinstance(v, (int, float))}
    del evaluator, parser
    gc.collect()
    return metrics


def main(out: str, cache: str) -> None:
    distributed = init_process_group()
    results = {b: {str(n): evaluate(b, cache, n, distributed) for n in SIZES} for b in BUNDLES}
    results["unreadable_on_last_rank"] = evaluate("usf_mae_classify", cache, 7, distributed, UNREADABLE_ON_LAST_RANK)
    results["usf_mae_classify_cnn"] = {str(n): evaluate("usf_mae_classify", cache, n, distributed,
                                                        network=cnn_baseline_overrides()) for n in SIZES}
    results["world_size"] = world_size()
    Path(f"{out}.rank{rank()}").write_text(json.dumps(results, indent=1))
    gc.collect()  # DDP reducers hold gloo work objects; free them before teardown (pytorch/pytorch#179291)
    destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
