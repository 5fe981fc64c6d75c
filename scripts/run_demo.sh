#!/usr/bin/env bash
# End-to-end demo on simulated ultrasound, sized for a 2-core CPU:
#   1. MAE pretraining through `python -m monai.bundle run` (ViT-Tiny, 128 px, one native gray channel, per-patch
#      normalised targets) on unlabelled frames of the benchmark's domain, with the representation monitor (kNN and
#      tuned-probe scores of the encoder on a labelled set every 2 epochs) and the reconstruction grids;
#   2. the subtle lesion benchmark (4 classes told apart by margin, echotexture or posterior shadowing; at most 100
#      labelled training images per fold): 5-fold cross-validation of the classification bundle's linear probe
#      (frozen features, logistic regression with C tuned on validation) and kNN, from the pretrained encoder and from
#      a random one, with the paired per-fold differences and their 95 % paired-t intervals (unadjusted for the
#      folds' shared training images: too narrow).
# Start: from a random initialisation, unless START names a small MAE checkpoint to continue from (default: the
# GPU-pretrained one in checkpoints/demo_start/ when that folder holds one; START=none forces the random start).
# With a start, step 1 continues pretraining from it (its SHA-256 checked against SHA256SUMS beside it) and step 2
# compares three starts: random, the start as it is, and the continued one.
# Outputs go to demo_output/ (override with OUT=...); SEED=1 or 2 repeats it with other pretraining seeds;
# FOLDS=0,1 runs only those folds of step 2. Creates or reuses .venv.
source "$(dirname "$0")/_venv.sh"
ensure_venv
# paths a user gives are relative to where they ran the command, not to the repository the script moves into
OUT="$(realpath -m -- "${OUT:-$REPO_ROOT/demo_output}")"
START="${START:-}"
if [ -n "$START" ] && [ "$START" != none ]; then START="$(realpath -m -- "$START")"; fi
cd "$REPO_ROOT"
SEED="${SEED:-0}"
EPOCHS="${EPOCHS:-8}"
NUM_IMAGES="${NUM_IMAGES:-1000}"
PER_CLASS="${PER_CLASS:-60}"
if [ -z "$START" ] && [ -f checkpoints/demo_start/model.pt ]; then START=checkpoints/demo_start/model.pt; fi
if [ "$START" = none ]; then START=""; fi
COMMON=(--arch mae_vit_tiny_patch16_dec128d2b --image_size 128 --in_channels 1)
INIT=()
if [ -n "$START" ]; then
  [ -f "$START" ] || { echo "START=$START: no such file" >&2; exit 2; }
  INIT=(--init_checkpoint "$START")
  sums="$(dirname "$START")/SHA256SUMS"
  if [ -f "$sums" ]; then
    digest=$(awk -v f="$(basename "$START")" '{sub(/^\*/, "", $2)} $2 == f {print $1}' "$sums")
    [ -n "$digest" ] || { echo "$sums has no line for $(basename "$START")" >&2; exit 2; }
    INIT+=(--init_sha256 "$digest")
  fi
fi
mkdir -p "$OUT"
start=$(date +%s)
PRETRAINED="$OUT/pretrain_seed$SEED/models/model.pt"

echo "== 1/3 MAE pretraining on $NUM_IMAGES unlabelled simulated frames, $EPOCHS epochs, seed $SEED (ViT-Tiny, 128 px, gray), from ${START:-a random initialisation} =="
# paths as arguments, not pasted into the Python source: an OUT with an apostrophe stays a path
frames=$(python -c "import sys; from monai_ext.data.lesion_benchmark import subtle_pretraining_frames as f; print(f(sys.argv[1], int(sys.argv[2])))" "$OUT/cache" "$NUM_IMAGES")
run_shown "$OUT/pretrain_seed$SEED.log" "epoch [0-9]+ (validation|representation)|reconstruction grid written|initial weights" \
  python -m monai.bundle run \
  --config_file bundles/usf_mae_pretrain/configs/train.yaml "${COMMON[@]}" --seed "$SEED" ${INIT[@]+"${INIT[@]}"} \
  --dataset_dir "$frames" --batch_size 32 --num_workers 2 --epochs "$EPOCHS" --save_interval "$EPOCHS" \
  --norm_pix_loss true --recipes#ultrasound#base_lr 8e-3 \
  --monitor_interval 2 --monitor_per_class 20 \
  --ckpt_dir "$OUT/pretrain_seed$SEED/models" --output_dir "$OUT/pretrain_seed$SEED/eval" --cache_dir "$OUT/cache"
python - "$OUT/pretrain_seed$SEED/eval" <<'PY'
import json, sys
folder = sys.argv[1]
history = json.load(open(f"{folder}/metrics.json"))
# absent: not measured that epoch ("-"); null: measured and not finite ("nan")
shown = lambda h, key, spec: "-" if key not in h else "nan" if h[key] is None else format(h[key], spec)
print("epoch | val loss (masked patches, per-patch normalised) | monitor kNN acc | monitor probe acc")
for h in history:
    print(f"{h['epoch']:5d} | {shown(h, 'val_loss', '.4f')} | {shown(h, 'monitor_knn_accuracy', '.3f')} | "
          f"{shown(h, 'monitor_probe_accuracy', '.3f')}")
print(f"grids and representation curve: {folder}/reconstructions/ (latest.png, representation_quality.png)")
PY

METHODS=(--init_checkpoint "$PRETRAINED" --methods pretrained,random)
if [ -n "$START" ]; then METHODS=(--methods "random,start=$START,continued=$PRETRAINED"); fi
FOLD_ARGS=()
if [ -n "${FOLDS:-}" ]; then FOLD_ARGS=(--folds "$FOLDS"); fi
echo "== 2/3 subtle lesion benchmark: 5-fold tuned linear probe + kNN, starts: ${METHODS[*]: -1} =="
run_shown "$OUT/probe_seed$SEED.log" "^\[cross-validation\]" \
  python -m monai_ext cross-validate subtle "$OUT/probe_seed$SEED" "${METHODS[@]}" ${FOLD_ARGS[@]+"${FOLD_ARGS[@]}"} \
  --cache_dir "$OUT/cache" --per_class "$PER_CLASS" --max_train 100 "${COMMON[@]}" --seed "$SEED" \
  --batch_size 32 --num_workers 0 --linear_probe true

echo "== 3/3 results =="
python - "$OUT/probe_seed$SEED/cv_summary.json" "$start" <<'PY'
import json, sys, time
record = json.load(open(sys.argv[1]))
print(record["table"])
def points(value):  # cv_summary.json holds null where a value is undefined (an interval over one fold)
    return "n/a" if value is None else f"{100 * value:+.1f}"
for name, diffs in record["differences_from_random"].items():
    for metric in ("macro_f1", "auc", "balanced_accuracy", "knn_macro_f1"):
        d = diffs[metric]
        print(f"{name} - random, {metric}: {points(d['mean'])} points "
              f"[95% CI, unadjusted {points(d['low'])}, {points(d['high'])}]")
print(f"demo wall time: {time.time() - float(sys.argv[2]):.0f} s")
PY
