"""Training of a tiny BatchNorm classifier under DDP, validated after each epoch on fewer images than ranks; run under
torchrun (gloo, CPU) for tests/engines/test_ddp_batchnorm_validation.py.

    python -m torch.distributed.run --standalone --nproc_per_node 3 tests/engines/ddp_batchnorm_worker.py OUT_DIR N

Each rank trains on its own images (scaled by its rank, so the ranks' BatchNorm running statistics drift apart
between DDP's broadcasts) and validates ``N`` images split by ``UnpaddedShardSampler``: with N below the world some
ranks have none. Every rank writes OUT_DIR/rank<r>.pt: per epoch its buffers before the validation, its weights and
buffers as the validation saw them, and the validation's logits gathered from every rank.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from torch import nn
from torch.utils.data import DataLoader

from monai_ext.engines.classification import ClassificationEvaluator, ClassificationTrainer
from monai_ext.engines.distributed import (
    UnpaddedShardSampler,
    destroy_process_group,
    gather_objects,
    init_process_group,
    rank,
    wrap_ddp,
)

EPOCHS = 2
CLASSES = 3


def make_network() -> nn.Module:
    """Conv + BatchNorm + linear head, the same initial weights in every process."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, CLASSES))


def validation_items(n: int) -> list[dict[str, Any]]:
    """``n`` fixed images with their position in the set."""
    images = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    return [{"image": images[i], "label": torch.tensor(i % CLASSES), "index": i} for i in range(n)]


def training_batches(for_rank: int) -> list[dict[str, torch.Tensor]]:
    """Two batches of 4, different on every rank and scaled by ``1 + rank``: different batch statistics."""
    gen = torch.Generator().manual_seed(100 + for_rank)
    return [{"image": torch.randn(4, 1, 8, 8, generator=gen) * (1 + for_rank) + for_rank,
             "label": torch.randint(0, CLASSES, (4,), generator=gen)} for _ in range(2)]


def module_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(out: str, n_validation: int) -> None:
    init_process_group()
    model = make_network()
    device = torch.device("cpu")
    network = wrap_ddp(model, device)
    trainer = ClassificationTrainer(
        device=device, max_epochs=EPOCHS, train_data_loader=training_batches(rank()), network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=nn.CrossEntropyLoss(),
        precision="fp32",
    )
    items = validation_items(n_validation)
    evaluator = ClassificationEvaluator(
        device=device, val_data_loader=DataLoader(items, batch_size=1, sampler=UnpaddedShardSampler(items)),
        network=network, decollate=False,
    )
    record: dict[int, dict[str, Any]] = {}
    logits: dict[int, list[float]] = {}

    # the epoch being validated (the evaluator's own counter is one behind on STARTED)
    current: dict[str, int] = {"epoch": 0}

    @evaluator.on(Events.STARTED)
    def keep_what_validation_sees(engine: ClassificationEvaluator) -> None:
        record[current["epoch"]]["seen"] = module_state(model)
        record[current["epoch"]]["runs_unwrapped"] = engine.network is model

    @evaluator.on(Events.ITERATION_COMPLETED)
    def keep_logits(engine: ClassificationEvaluator) -> None:
        for index, row in zip(engine.state.batch["index"].tolist(), engine.state.output["pred"]):
            logits[int(index)] = row.tolist()

    @evaluator.on(Events.COMPLETED)
    def gather_logits(_engine: ClassificationEvaluator) -> None:  # every rank, an empty one too: a collective
        gathered: dict[int, list[float]] = {}
        for part in gather_objects(dict(logits)):
            gathered.update(part)
        record[current["epoch"]]["logits"] = gathered
        logits.clear()

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: ClassificationTrainer) -> None:  # as MONAI's ValidationHandler does
        current["epoch"] = engine.state.epoch
        record[engine.state.epoch] = {"before": module_state(model)}
        evaluator.run(engine.state.epoch)
        record[engine.state.epoch]["network_restored"] = evaluator.network is network

    trainer.run()
    torch.save(record, Path(out) / f"rank{rank()}.pt")
    # Frees DDP's reducer (gloo work objects) while the interpreter is alive (pytorch/pytorch#179291).
    destroy_process_group(network)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], int(sys.argv[2]))
