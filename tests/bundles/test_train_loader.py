"""Each bundle's training loader gives every rank at least one batch, whatever the shard size: a shard smaller than
one batch trains whole (``drop_last`` off) and a larger one drops its last partial batch. Built by MONAI's
``ConfigParser`` from the bundles' own ``train.yaml``, overlaid with their ``multi_gpu_train.yaml`` as ``torchrun``
runs them; only the data and the process group are stood in (the rank and world that torchrun would give)."""

from __future__ import annotations

import math

import pytest
import torch.distributed
from monai.bundle import ConfigParser

from tests.bundles.helpers import REPO

#: (bundle, settings given as on the command line): classify's --balanced_sampler overlay path is its own sampler
BUNDLES = [("usf_mae_pretrain", {}), ("usf_mae_classify", {}), ("usf_mae_classify", {"balanced_sampler": True}),
           ("usf_mae_segment", {})]


def training_loader(bundle: str, settings: dict, items: int, batch_size: int, world: int | None, rank: int,
                    monkeypatch: pytest.MonkeyPatch):
    """The bundle's ``train#dataloader`` over ``items`` stand-in items: single-process from ``train.yaml``, or on
    ``rank`` of ``world`` ranks from ``train.yaml`` + ``multi_gpu_train.yaml``."""
    configs = ["train.yaml"] + (["multi_gpu_train.yaml"] if world is not None else [])
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / bundle / "configs" / name) for name in configs])
    # the data: classify's samplers read the training datalist's labels, the others only the dataset's length
    if parser.get("split") is not None:
        parser["split"] = {"class_names": ["a", "b"], "validation": [], "test": [],
                           "train": [{"image": f"{i}.png", "label": i % 2, "id": str(i)} for i in range(items)]}
    parser["train#dataset"] = f"$list(range({items}))"
    for key, value in {**settings, "batch_size": batch_size, "num_workers": 0}.items():
        parser[key] = value
    if world is not None:  # the process group torchrun would start: everything else is the overlay's
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args, **kwargs: world)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda *args, **kwargs: rank)
    return parser.get_parsed_content("train#dataloader")


@pytest.mark.parametrize("bundle, settings", BUNDLES)
@pytest.mark.parametrize("items, batch_size, world, batches, drop_last", [
    (3, 4, None, 1, False),    # a set smaller than one batch (it gave zero steps in pretraining)
    (9, 4, None, 2, True),     # the usual case: the last partial batch is dropped
    (5, 4, 2, 1, False),       # 2 ranks, shards of 3: smaller than a batch, though the whole set is not
    (11, 4, 2, 1, True),       # shards of 6: one full batch each, the rest dropped
    (7, 4, 3, 1, False),       # 3 ranks, shards of 3 (7 does not divide: padded to 9)
    (9, 4, 2, 1, True),        # shards of 5 (padded from 9 to 10): unpadded, rank 1's 4 would be one whole batch
])
def test_every_rank_gets_at_least_one_batch(bundle, settings, items, batch_size, world, batches, drop_last,
                                            monkeypatch) -> None:
    ranks = range(world) if world else [0]
    loaders = [training_loader(bundle, settings, items, batch_size, world, rank, monkeypatch) for rank in ranks]
    assert [(len(loader), loader.drop_last) for loader in loaders] == [(batches, drop_last)] * len(loaders)


@pytest.mark.parametrize("bundle, settings", BUNDLES)
@pytest.mark.parametrize("items, world", [(5, 2), (11, 2), (7, 3), (2, 3)])
def test_the_multi_gpu_sampler_shards_every_item_shuffled_by_the_run_s_seed(bundle, settings, items, world,
                                                                          monkeypatch) -> None:
    """Equal shards of ceil(N / world) (DDP needs the same number of steps on every rank), together covering every
    item each epoch (a uniform draw for the balanced sampler), shuffled, in an order every rank and a resumed run
    derive from ``--seed`` (not a fixed default that makes every run see the same order)."""
    settings = {**settings, "seed": 7}   # --seed 7
    samplers = [training_loader(bundle, settings, items, 2, world, rank, monkeypatch).sampler
                for rank in range(world)]
    assert [len(sampler) for sampler in samplers] == [math.ceil(items / world)] * world
    drawn = [index for sampler in samplers for index in sampler]
    if settings.get("balanced_sampler"):
        assert set(drawn) <= set(range(items))
    else:
        assert sorted(set(drawn)) == list(range(items))
    assert [(sampler.shuffle, sampler.seed) for sampler in samplers] == [(True, 7)] * world
