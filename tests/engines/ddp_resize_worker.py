"""A pretraining run killed on 2 ranks and resumed on 3, for tests/engines/test_ddp_resume_resize.py (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node N tests/engines/ddp_resize_worker.py OUT_DIR NAME

11 images, batches of 2, MONAI's padding ``DistributedSampler``: 2 ranks have 6 images each (3 iterations an epoch),
3 ranks have 4 (2 iterations). 3 epochs, checkpoints in OUT_DIR/ckpt every epoch, resume when NAME is "resume". With
KILL_AT_ITERATION=k in the environment rank 1 kills itself with SIGKILL as iteration k starts. Each rank writes
OUT_DIR/NAME.rank<r>.json: the epochs' first iterations, the lr of every iteration, the final iteration, the optimiser
steps, a digest of the weights and the checkpointer's warnings.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, DistributedSampler
from monai.utils import set_determinism

from monai_ext.engines.distributed import destroy_process_group, init_process_group, rank, wrap_ddp
from monai_ext.engines.mae import MAETrainer
from monai_ext.engines.optim import WarmupCosineLR, build_adamw
from monai_ext.handlers.checkpointing import RandomStates, TrainingCheckpointer
from monai_ext.handlers.seeding import PositionSeeding
from monai_ext.networks.mae import MaskedAutoencoderViT

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 4, "decoder_embed_dim": 16,
        "decoder_depth": 1, "decoder_num_heads": 2}
SEED, IMAGES, EPOCHS = 3, 11, 3


class Warnings(logging.Handler):
    """The checkpointing module's warnings, kept for the record."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(out: Path, name: str) -> None:
    init_process_group()
    set_determinism(seed=SEED + rank())
    warnings = Warnings()
    logging.getLogger("monai_ext.handlers.checkpointing").addHandler(warnings)
    images = torch.randn(IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    dataset = Dataset([{"image": im} for im in images])
    loader = DataLoader(dataset, batch_size=2, sampler=DistributedSampler(dataset, shuffle=True, seed=SEED))
    model = MaskedAutoencoderViT(**TINY)
    network = wrap_ddp(model, torch.device("cpu"))
    optimizer = build_adamw(network, lr=1e-3)
    scheduler = WarmupCosineLR(optimizer, total_steps=EPOCHS * len(loader), warmup_steps=1)
    trainer = MAETrainer(device=torch.device("cpu"), max_epochs=EPOCHS, train_data_loader=loader, network=network,
                         optimizer=optimizer, precision="fp32", clip_grad_norm=1.0)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: scheduler.step())
    PositionSeeding(SEED).attach(trainer)
    TrainingCheckpointer(out / "ckpt", {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler,
                                        "trainer": trainer, "random_states": RandomStates()},
                         save_interval=1, resume=name == "resume").attach(trainer)
    record: dict[str, object] = {"epoch_starts": [], "lr": {}}
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: record["epoch_starts"].append(
        [e.state.epoch, e.state.iteration]))

    def at_iteration_start(engine) -> None:
        record["lr"][engine.state.iteration] = engine.optimizer.param_groups[0]["lr"]  # the lr this iteration uses
        if engine.state.iteration == int(os.environ.get("KILL_AT_ITERATION", "0")) and rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as an out-of-memory killer or a lost node would

    trainer.add_event_handler(Events.ITERATION_STARTED, at_iteration_start)
    trainer.run()
    digest = hashlib.sha1(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    record.update(iteration=trainer.state.iteration, epoch_length=trainer.state.epoch_length, weights=digest,
                  optimizer_steps=int(max(s["step"] for s in optimizer.state_dict()["state"].values())),
                  warnings=warnings.messages)
    (out / f"{name}.rank{rank()}.json").write_text(json.dumps(record))
    del trainer, optimizer, network  # free DDP's gloo work objects while the interpreter is alive (pytorch#179291)
    gc.collect()
    destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2])
