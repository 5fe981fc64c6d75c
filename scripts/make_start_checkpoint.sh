#!/usr/bin/env bash
# The GPU route of the demo (issue #19): pretrain, on a GPU, the small MAE that scripts/run_demo.sh then continues on
# a CPU, as USF-MAE continued from ImageNet MAE. Same architecture and inputs as the demo (ViT-Tiny/16 MAE with the
# 2-block 128-wide decoder, 128 px, one gray channel, per-patch normalised targets) on unlabelled frames of the
# benchmark's domain (a draw disjoint from the demo's own frames and from the benchmark's images).
#
#   scripts/make_start_checkpoint.sh                       # on the GPU machine; settings below, all overridable
#   RESUME=true EPOCHS=200 scripts/make_start_checkpoint.sh  # continue a run that the machine's time limit cut
#
# Publishes into DEST (default checkpoints/demo_start/): model.pt (at most 25 MB), SHA256SUMS, command.txt (the exact
# bundle command), machine.txt (device, torch, date, commit), train.log, metrics.json and the representation curve.
# Commit that folder: the demo then starts from it and compares random, this start and the continued one.
# SMOKE=1 makes a tiny one on the CPU in a minute or two: a functional check only (tests/scripts/test_make_start_checkpoint.py).
source "$(dirname "$0")/_venv.sh"
ensure_venv
# paths a user gives are relative to where they ran the command, not to the repository the script moves into
DEST="$(realpath -m -- "${DEST:-$REPO_ROOT/checkpoints/demo_start}")"
WORK="$(realpath -m -- "${WORK:-$REPO_ROOT/demo_output/start_work}")"
cd "$REPO_ROOT"
FRAMES="${FRAMES:-40000}"
EPOCHS="${EPOCHS:-100}"
BATCH="${BATCH:-256}"
BASE_LR="${BASE_LR:-1.5e-4}"   # MAE's; lr = BASE_LR x BATCH / 256
WORKERS="${WORKERS:-$(nproc)}"
SEED="${SEED:-0}"
RESUME="${RESUME:-false}"
MONITOR="${MONITOR:-10}"
MONITOR_PER_CLASS=50
if [ "${SMOKE:-0}" = 1 ]; then
  FRAMES=24 EPOCHS=1 BATCH=8 WORKERS=1 MONITOR=1 MONITOR_PER_CLASS=5
fi
mkdir -p "$WORK"

echo "== 1/3 $FRAMES unlabelled frames of the benchmark's domain ($WORKERS processes) =="
# paths as arguments, not pasted into the Python source: a WORK with an apostrophe stays a path
frames=$(python -c "import sys; from monai_ext.data.lesion_benchmark import subtle_pretraining_frames as f; \
print(f(sys.argv[1], int(sys.argv[2]), seed=1000 + int(sys.argv[3]), workers=int(sys.argv[4])))" \
  "$WORK/cache" "$FRAMES" "$SEED" "$WORKERS")

echo "== 2/3 MAE pretraining, $EPOCHS epochs, batch $BATCH, base lr $BASE_LR, seed $SEED =="
command=(python -m monai.bundle run
  --config_file bundles/usf_mae_pretrain/configs/train.yaml
  --arch mae_vit_tiny_patch16_dec128d2b --image_size 128 --in_channels 1 --norm_pix_loss true
  --seed "$SEED" --dataset_dir "$frames" --batch_size "$BATCH" --num_workers "$WORKERS" --epochs "$EPOCHS"
  --save_interval 10 --resume "$RESUME" --recipes#ultrasound#base_lr "$BASE_LR"
  --monitor_interval "$MONITOR" --monitor_per_class "$MONITOR_PER_CLASS"
  --ckpt_dir "$WORK/models" --output_dir "$WORK/eval" --cache_dir "$WORK/cache")
run_shown "$WORK/train.log" "epoch [0-9]+ (validation|representation)" "${command[@]}"

echo "== 3/3 publishing into $DEST =="
python - "$WORK" "$DEST" "$(printf '%q ' "${command[@]}")" <<'PY'
import json, os, platform, subprocess, sys, time
from pathlib import Path

import torch

from monai_ext.io.atomic import atomic_write_bytes, atomic_write_text
from monai_ext.networks.checkpoints import build_from_checkpoint, read_checkpoint, sha256_of

work, dest, command = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
source = work / "models" / "model.pt"
limit = 25 * 2**20
if source.stat().st_size > limit:
    sys.exit(f"{source} is {source.stat().st_size / 2**20:.1f} MB, over the 25 MB the demo may ship")
build_from_checkpoint(read_checkpoint(source))  # rebuilds from its own record, strictly: the demo can load it
dest.mkdir(parents=True, exist_ok=True)
atomic_write_bytes(dest / "model.pt", source.read_bytes())
atomic_write_text(dest / "SHA256SUMS", f"{sha256_of(dest / 'model.pt')}  model.pt\n")
atomic_write_text(dest / "command.txt", command.rstrip() + "\n")
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)"
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
machine = {"device": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count(),
           "platform": platform.platform(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "git_commit": commit}
atomic_write_text(dest / "machine.txt", json.dumps(machine, indent=1) + "\n")
for name, found in (("train.log", work / "train.log"), ("metrics.json", work / "eval" / "metrics.json"),
                    ("representation_quality.png", work / "eval" / "reconstructions" / "representation_quality.png"),
                    ("reconstructions.png", work / "eval" / "reconstructions" / "latest.png")):
    if found.is_file():
        atomic_write_bytes(dest / name, found.read_bytes())
print(f"{dest / 'model.pt'}: {(dest / 'model.pt').stat().st_size / 2**20:.1f} MB, "
      f"sha256 {sha256_of(dest / 'model.pt')}, trained on {gpu}")
PY
