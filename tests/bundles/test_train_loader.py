"""Each bundle's training loader gives every rank at least one batch, whatever the shard size: a shard smaller than
one batch trains whole (``drop_last`` off) and a larger one drops its last partial batch. Built from the bundles'
own ``train.yaml`` by MONAI's ``ConfigParser``, with the ranks' ``DistributedSampler`` of ``multi_gpu_train``."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from tests.bundles.helpers import REPO

BUNDLES = ("usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment")


def training_loader(bundle: str, items: int, batch_size: int, world: int | None, rank: int = 0):
    """The bundle's ``train#dataloader`` over ``items`` stand-in items, on ``rank`` of ``world`` ranks (or one)."""
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "train.yaml"))
    parser["train#dataset"] = f"$list(range({items}))"
    if world is not None:  # what multi_gpu_train.yaml puts there, with the rank given instead of read from torchrun
        parser["train#sampler"] = (f"$monai.data.DistributedSampler(@train#dataset, num_replicas={world}, "
                                   f"rank={rank}, even_divisible=True, shuffle=False)")
    parser["batch_size"] = batch_size
    parser["num_workers"] = 0
    return parser.get_parsed_content("train#dataloader")


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("items, batch_size, world, batches, drop_last", [
    (3, 4, None, 1, False),    # a set smaller than one batch (it gave zero steps in pretraining)
    (9, 4, None, 2, True),     # the usual case: the last partial batch is dropped
    (5, 4, 2, 1, False),       # 2 ranks, shards of 3: smaller than a batch, though the whole set is not
    (11, 4, 2, 1, True),       # shards of 6: one full batch each, the rest dropped
    (7, 4, 3, 1, False),       # 3 ranks, shards of 3 (7 does not divide: MONAI pads to 9)
])
def test_every_rank_gets_at_least_one_batch(bundle, items, batch_size, world, batches, drop_last) -> None:
    ranks = range(world) if world else [0]
    loaders = [training_loader(bundle, items, batch_size, world, rank) for rank in ranks]
    assert [(len(loader), loader.drop_last) for loader in loaders] == [(batches, drop_last)] * len(loaders)
