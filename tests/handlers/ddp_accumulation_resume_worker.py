"""Data-parallel training with gradient accumulation, uninterrupted and stopped after an iteration-level save inside
an accumulation window then resumed, under torchrun (gloo); for each case rank 0 writes what the resumed run ended on.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/handlers/ddp_accumulation_resume_worker.py OUT_DIR SAVE_INTERVAL:STOP_AT,...

OUT_DIR/result.json: ``{"SAVE_INTERVAL:STOP_AT": {"resumed_from": name, "max_difference": float, "same": bool}}``.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
from pathlib import Path

import torch
from ignite.engine import Events
from torch import nn

from monai_ext.engines.classification import ClassificationTrainer
from monai_ext.engines.distributed import destroy_process_group, init_process_group, rank, wrap_ddp
from monai_ext.handlers.checkpointing import RandomStates, TrainingCheckpointer
from monai_ext.io.signals import StopSignal
from tests.engines.test_nonfinite_guard import FINITE, batch

ACCUMULATION, EPOCH_LENGTH, EPOCHS = 3, 7, 2


def train(folder: Path | None, save_interval: int, stop_at: int | None = None,
          resume: bool = False) -> tuple[nn.Module, TrainingCheckpointer | None]:
    """Train a tiny DDP classifier on this rank's shard; stop by a stop signal's exception after ``stop_at``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    network = wrap_ddp(model, torch.device("cpu"))
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.05)
    data = [batch(FINITE, 100 * rank() + i) for i in range(EPOCH_LENGTH)]  # each rank its own shard
    trainer = ClassificationTrainer(device=torch.device("cpu"), max_epochs=EPOCHS, train_data_loader=data,
                                    network=network, optimizer=optimizer, loss_function=nn.CrossEntropyLoss(),
                                    precision="fp32", accumulation_steps=ACCUMULATION, clip_grad_norm=1.0)
    checkpointer = None
    if folder is not None:
        # RandomStates: the save is a collective (its gather), which every rank must reach at the same iteration
        checkpointer = TrainingCheckpointer(folder, {"network": network, "optimizer": optimizer, "trainer": trainer,
                                                     "random_states": RandomStates()},
                                            save_interval=save_interval, epoch_level=False, n_saved=10, resume=resume)
        checkpointer.attach(trainer)
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at),
                                  lambda e: (_ for _ in ()).throw(StopSignal(signal.SIGTERM)))
    try:
        trainer.run()
    except StopSignal:
        pass
    del trainer, optimizer, network  # DDP's reducer released while the interpreter is whole (see ddp_worker.py)
    gc.collect()
    return model, checkpointer


def main(out_dir: str, cases: list[tuple[int, int]]) -> None:
    init_process_group()
    out = Path(out_dir)
    reference, _ = train(None, 0)
    want = torch.cat([p.detach().flatten() for p in reference.parameters()])
    results = {}
    for save_interval, stop_at in cases:
        folder = out / f"every{save_interval}_stop{stop_at}"
        if rank() == 0:
            folder.mkdir(parents=True, exist_ok=True)
        torch.distributed.barrier()
        train(folder, save_interval, stop_at)
        torch.distributed.barrier()  # rank 0's files are whole before any rank looks for them
        model, checkpointer = train(folder, save_interval, resume=True)
        got = torch.cat([p.detach().flatten() for p in model.parameters()])
        results[f"{save_interval}:{stop_at}"] = {
            "resumed_from": checkpointer.resumed_from.name if checkpointer.resumed_from else None,
            "max_difference": (got - want).abs().max().item(), "same": torch.equal(got, want)}
    if rank() == 0:
        (out / "result.json").write_text(json.dumps(results, indent=1) + "\n")
    destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], [tuple(int(n) for n in case.split(":")) for case in sys.argv[2].split(",")])
