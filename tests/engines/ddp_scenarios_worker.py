"""Multi-rank pretraining scenarios for tests/engines/test_ddp_scenarios.py; run under torchrun (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/engines/ddp_scenarios_worker.py \
        OUT_DIR SCENARIO [SCENARIO ...]

Scenarios (run in order in one process group, each with a fresh model):
    train       3 epochs of a tiny MAE with AdamW, augmentations, per-epoch checkpoints in OUT_DIR/ckpt; with
                KILL_AT_ITERATION=k in the environment rank 1 kills itself with SIGKILL after iteration k
    resume      the same run with resume=True from OUT_DIR/ckpt
    nan_once    a NaN loss on rank 1 only at iteration 2 (gradients stay finite), 4 iterations
    nan_limit   NaN losses on rank 1 from iteration 2 on, max_nonfinite_steps=3
    nan_grads   as nan_limit, but rank 1's loss is multiplied by NaN: its gradients are NaN too, and so, once DDP has
                averaged them, are every rank's
    unreadable  resume where rank 1's checkpoint folder is empty (a node without the shared filesystem)

Every launch writes OUT_DIR/process.rank<r>.json (what the process group's start left behind). Each scenario writes
OUT_DIR/<scenario>.rank<r>.json (and .pt for the final states); the masks of every iteration are
appended to OUT_DIR/<scenario>.masks.rank<r>.txt as they happen (so a killed run leaves them too).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, DistributedSampler
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from monai.utils import set_determinism

from monai_ext.engines.distributed import destroy_process_group, init_process_group, rank, wrap_ddp
from monai_ext.engines.mae import MAETrainer
from monai_ext.engines.optim import WarmupCosineLR, build_adamw
from monai_ext.handlers.checkpointing import RandomStates, TrainingCheckpointer
from monai_ext.handlers.seeding import PositionSeeding
from monai_ext.networks.mae import MaskedAutoencoderViT

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 4, "decoder_embed_dim": 16, "decoder_depth": 1,
            "decoder_num_heads": 2}
SEED = 7
IMAGES = 12  # 6 per rank, batches of 2: 3 iterations an epoch


class NaNOnRank1(MAETrainer):
    """Adds a NaN constant to rank 1's loss at the given iterations: the loss is NaN there, the gradients are not,
    which is the case a local check lets the ranks disagree on. With ``nan_gradients`` the loss is multiplied by NaN
    instead, which makes rank 1's gradients NaN as well (and every rank's after DDP's all-reduce)."""

    def __init__(self, *args, nan_iterations: set[int], nan_gradients: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nan_iterations = nan_iterations
        self.nan_gradients = nan_gradients

    def forward_loss(self, engine, batchdata):
        loss, outputs = super().forward_loss(engine, batchdata)
        if rank() == 1 and engine.state.iteration in self.nan_iterations:
            nan = torch.tensor(float("nan"))
            loss = loss * nan if self.nan_gradients else loss + nan
        return loss, outputs


class KeptMessages(logging.Handler):
    """The messages of the records it is given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def build(out: Path, scenario: str, epochs: int, ckpt_dir: Path | None, resume: bool, nan_iterations=frozenset(),
          max_nonfinite_steps: int = 5, nan_gradients: bool = False):
    set_determinism(seed=SEED + rank())
    images = torch.randn(IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    augment = Compose([RandFlipd("image", prob=0.5, spatial_axis=1), RandGaussianNoised("image", prob=0.5, std=0.1)])
    dataset = Dataset([{"image": im} for im in images], transform=augment)
    loader = DataLoader(dataset, batch_size=2, sampler=DistributedSampler(dataset, shuffle=True, seed=SEED),
                        num_workers=0)
    model = MaskedAutoencoderViT(**TINY)
    network = wrap_ddp(model, torch.device("cpu"))
    optimizer = build_adamw(network, lr=1e-3)
    scheduler = WarmupCosineLR(optimizer, total_steps=epochs * len(loader), warmup_steps=2)
    trainer = NaNOnRank1(device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=network,
                         optimizer=optimizer, precision="fp32", clip_grad_norm=1.0, nan_iterations=set(nan_iterations),
                         max_nonfinite_steps=max_nonfinite_steps, log_interval=2, nan_gradients=nan_gradients)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: scheduler.step())
    PositionSeeding(SEED, [augment]).attach(trainer)
    if ckpt_dir is not None:
        TrainingCheckpointer(ckpt_dir, {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler,
                                        "trainer": trainer, "random_states": RandomStates()},
                             save_interval=1, n_saved=5, resume=resume).attach(trainer)
    masks = (out / f"{scenario}.masks.rank{rank()}.txt").open("a")

    def record_mask(engine) -> None:
        mask = torch.stack([item["mask"] for item in engine.state.output])  # the decollated output: one dict an image
        digest = hashlib.sha1(mask.numpy().tobytes()).hexdigest()
        masks.write(f"{engine.state.iteration} {digest}\n")
        masks.flush()
        if engine.state.iteration == int(os.environ.get("KILL_AT_ITERATION", "0")) and rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as an out-of-memory killer or a lost node would

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record_mask)
    return model, optimizer, trainer, masks


def run_scenario(out: Path, scenario: str) -> None:
    ckpt = out / "ckpt"
    settings = {
        "train": {"epochs": 3, "ckpt_dir": ckpt, "resume": False},
        "resume": {"epochs": 3, "ckpt_dir": ckpt, "resume": True},
        "nan_once": {"epochs": 2, "ckpt_dir": None, "resume": False, "nan_iterations": {2}},
        "nan_limit": {"epochs": 3, "ckpt_dir": None, "resume": False, "nan_iterations": set(range(2, 10)),
                          "max_nonfinite_steps": 3},
        "nan_grads": {"epochs": 3, "ckpt_dir": None, "resume": False, "nan_iterations": set(range(2, 10)),
                      "max_nonfinite_steps": 3, "nan_gradients": True},
        "unreadable": {"epochs": 3, "ckpt_dir": ckpt if rank() == 0 else out / f"node{rank()}_ckpt", "resume": True},
    }[scenario]
    model, optimizer, trainer, masks = build(out, scenario, **settings)
    record: dict[str, object] = {"rank": rank()}
    warnings = KeptMessages()
    logging.getLogger("monai_ext.engines.base").addHandler(warnings)
    try:
        trainer.run()
    except Exception as e:  # noqa: BLE001  (what each rank raised is the scenario's outcome)
        record.update(error_type=type(e).__name__, error=str(e), traceback=traceback.format_exc())
    finally:
        logging.getLogger("monai_ext.engines.base").removeHandler(warnings)
    record["warnings"] = warnings.messages
    record["iteration"] = trainer.state.iteration
    record["optimizer_steps"] = int(max((s["step"] for s in optimizer.state_dict()["state"].values()),
                                        default=torch.tensor(0)))
    Path(out / f"{scenario}.rank{rank()}.json").write_text(json.dumps(record))
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, out / f"{scenario}.rank{rank()}.pt")
    masks.close()
    # Free DDP's reducer (gloo work objects) while the interpreter is alive (pytorch/pytorch#179291).
    del model, optimizer, trainer
    gc.collect()


def record_process(out: Path) -> None:
    """OUT_DIR/process.rank<r>.json: what init_process_group left behind. ``new_groups``: the groups ignite still
    had to build when a metric first asked it the world size (each a collective that a dead peer blocks);
    ``death_signal``: the signal Linux sends this worker when the launcher dies (0: none); ``engine_log_level``: the
    level set on the engines' parent logger (0: none, the lines show as the application configured them)."""
    import ctypes

    import ignite.distributed as idist
    import torch.distributed as dist

    built = []
    new_group = dist.new_group
    dist.new_group = lambda *args, **kwargs: built.append(args) or new_group(*args, **kwargs)
    try:
        idist.get_world_size()
    finally:
        dist.new_group = new_group
    death_signal = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(death_signal), 0, 0, 0)  # PR_GET_PDEATHSIG
    record = {"new_groups": len(built), "death_signal": death_signal.value,
              "engine_log_level": logging.getLogger("ignite.engine").level}
    Path(out / f"process.rank{rank()}.json").write_text(json.dumps(record))


def main(out: str, scenarios: list[str]) -> None:
    init_process_group()
    record_process(Path(out))
    for scenario in scenarios:
        run_scenario(Path(out), scenario)
    destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2:])
