"""One MAETrainer epoch of one optimiser step on a fixed global batch, for each of the gradient accumulations given
(one process group for them all: a launch costs every rank its imports); run directly or under torchrun (gloo).

    python tests/engines/ddp_worker.py OUT_DIR 1
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/engines/ddp_worker.py OUT_DIR 1,2

Rank 0 writes OUT_DIR/accumulation<N>.pt: the initial and the final weights.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from monai_ext.engines.distributed import destroy_process_group, init_process_group, rank, world_size, wrap_ddp
from monai_ext.engines.mae import MAETrainer
from monai_ext.networks.mae import MaskedAutoencoderViT

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
            decoder_num_heads=2)
GLOBAL_BATCH = 8


def main(out_dir: str, accumulations: list[int]) -> None:
    init_process_group()
    for accumulation in accumulations:
        record = one_step(accumulation)
        if rank() == 0:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            torch.save(record, Path(out_dir) / f"accumulation{accumulation}.pt")
    destroy_process_group()


def one_step(accumulation: int) -> dict[str, dict[str, torch.Tensor]]:
    """The initial and final weights of one epoch (one optimiser step over the global batch)."""
    gen = torch.Generator().manual_seed(123)
    images = torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=gen)
    noise = torch.rand(GLOBAL_BATCH, 16, generator=gen)
    per_rank = GLOBAL_BATCH // world_size()
    mine = range(rank() * per_rank, (rank() + 1) * per_rank)
    items = [{"image": images[i], "noise": noise[i]} for i in mine]
    loader = DataLoader(items, batch_size=per_rank // accumulation, shuffle=False)

    torch.manual_seed(0)
    model = MaskedAutoencoderViT(**TINY)
    device = torch.device("cpu")
    network = wrap_ddp(model, device)
    # Plain SGD: the step is the gradient itself, so equal weights mean equal all-reduced gradients. (Adam's first
    # step divides by |g|, which turns the float noise of exactly-zero gradients, e.g. of the key bias, into lr-sized
    # updates.)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
    trainer = MAETrainer(device=device, max_epochs=1, train_data_loader=loader, network=network,
                         optimizer=optimizer, accumulation_steps=accumulation, precision="fp32", clip_grad_norm=1.0)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.run()
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # Release DDP's reducer (it holds gloo work objects with tensors) while the interpreter is fully alive: left to
    # interpreter finalization, gloo's threads can abort the process (pytorch/pytorch#179291).
    del trainer, optimizer, network
    gc.collect()
    return {"initial": initial, "final": final}


if __name__ == "__main__":
    main(sys.argv[1], [int(n) for n in sys.argv[2].split(",")])
