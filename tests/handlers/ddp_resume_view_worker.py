"""One rank asking ``will_resume`` where ranks do not share ``ckpt_dir`` (nodes with local disks).

    python -m torch.distributed.run --standalone --nproc_per_node N tests/handlers/ddp_resume_view_worker.py OUT

Rank r looks at ``OUT/rank<r>``; only rank 0's folder holds a checkpoint. Each rank writes its answer to
``OUT/answer.rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from monai_ext.engines.distributed import destroy_process_group, init_process_group, rank
from monai_ext.handlers.checkpointing import will_resume


def main(out: Path) -> None:
    init_process_group()
    folder = out / f"rank{rank()}"
    folder.mkdir(parents=True, exist_ok=True)
    if rank() == 0:
        (folder / "checkpoint_iteration=4.pt").write_bytes(b"")
    (out / f"answer.rank{rank()}.json").write_text(json.dumps(will_resume(folder, True)))
    destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
