#!/usr/bin/env bash
# End-to-end demo on the embedded synthetic-ultrasound data, sized for a 2-core CPU (a few minutes):
#   MAE pretraining through `python -m monai.bundle run` with a ViT-Tiny at 128 px, then the printed validation
#   reconstruction loss per epoch and the path of the reconstruction grid PNG.
# Outputs go to demo_output/ (override with OUT=...). Creates or reuses .venv.
source "$(dirname "$0")/_venv.sh"
ensure_venv
cd "$REPO_ROOT"
OUT="${OUT:-$REPO_ROOT/demo_output}"
EPOCHS="${EPOCHS:-6}"
NUM_IMAGES="${NUM_IMAGES:-1200}"
mkdir -p "$OUT"

echo "== 1/2 MAE pretraining on $NUM_IMAGES synthetic ultrasound images, $EPOCHS epochs (ViT-Tiny, 128 px, CPU) =="
python -m monai.bundle run \
  --config_file bundles/usf_mae_pretrain/configs/train.yaml \
  --arch mae_vit_tiny_patch16_dec128d2b --image_size 128 --batch_size 32 --num_workers 2 \
  --epochs "$EPOCHS" --save_interval 2 --num_synthetic "$NUM_IMAGES" \
  --ckpt_dir "$OUT/pretrain/models" --output_dir "$OUT/pretrain/eval" --cache_dir "$OUT/cache" \
  --resume false 2>&1 | grep -vE "Epoch \[|it/s\]|warnings.warn|^\s*$" | grep -E "INFO - (Epoch\[|epoch [0-9]+ validation|pretraining data|synthetic default)|new best|reconstruction grid|Error|error" || true

echo "== 2/2 results =="
python - "$OUT/pretrain/eval/metrics.json" "$OUT/pretrain/eval/reconstructions/latest.png" <<'PY'
import json, sys
history = json.load(open(sys.argv[1]))
print("validation reconstruction loss (MSE on masked patches) by epoch:")
for h in history:
    print(f"  epoch {h['epoch']:3d}: {h['val_loss']:.4f}")
first, last = history[0]["val_loss"], history[-1]["val_loss"]
print(f"fell from {first:.4f} to {last:.4f} ({100 * (first - last) / first:.1f}% lower)")
print("reconstruction grid (original | masked | reconstruction | reconstruction + visible):", sys.argv[2])
if not last < first:
    sys.exit("validation loss did not fall")
PY
