#!/usr/bin/env bash
# Serve the fine-tuned classifier to annotators through MONAI Label (creates .venv-label on first use).
#
#   [LABEL_PORT=8000] scripts/run_label_server.sh STUDIES_DIR [monailabel start_server options, e.g. --conf device cuda]
#
# STUDIES_DIR holds the images annotators browse (PNG/JPG/BMP/TIFF/DICOM). The model defaults to
# bundles/usf_mae_classify/models/model.pt; choose another with --conf checkpoint /path/model.pt.
# Binds 127.0.0.1 unless --host is given. MONAI Label 0.8.5 allows every CORS origin and fails to start when
# MONAI_LABEL_CORS_ORIGINS is set, so before exposing it beyond this machine enable authentication
# (README, "Serving with MONAI Label").
source "$(dirname "$0")/_venv.sh"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 STUDIES_DIR [monailabel start_server options]" >&2
  exit 2
fi
STUDIES="$1"
shift
# MONAI Label creates a missing studies folder and serves it empty: a typo would look like an empty worklist.
# (A DICOMweb address is MONAI Label's remote datastore, not a folder.)
case "$STUDIES" in
  http://*|https://*) ;;
  *) if [ ! -d "$STUDIES" ]; then
       echo "error: STUDIES_DIR $STUDIES is not an existing folder (MONAI Label would serve it empty)" >&2
       exit 2
     fi ;;
esac
ensure_label_venv
APP_DIR="${LABEL_APP_DIR:-$REPO_ROOT/.monailabel/app}"
# MONAI Label writes logs/, model/ and lib/ next to main.py, so the app runs from a working folder, not the package.
mkdir -p "$APP_DIR"
cp "$REPO_ROOT/monai_ext/apps/label/main.py" "$APP_DIR/main.py"
# Without --log_config MONAI Label writes its logging config to a new temporary file at every start and never removes
# it (one more tmp*.json in /tmp per start): the app folder's own copy is written instead, from MONAI Label's template
# as MONAI Label fills it in (its logs in <app>/logs/app.log). A --log_config of the caller's, later, still wins.
LOG_CONFIG="$APP_DIR/logging.json"
"$LABEL_VENV/bin/python" - "$APP_DIR" "$LOG_CONFIG" <<'PY'
import importlib.util, json, os, sys
app_dir, target = os.path.realpath(sys.argv[1]), sys.argv[2]
template = os.path.join(os.path.dirname(importlib.util.find_spec("monailabel").origin), "logging.json")
logs = os.path.join(app_dir, "logs")
os.makedirs(logs, exist_ok=True)
with open(template, encoding="utf-8") as f:
    text = f.read()
for name, value in (("${LOGDIR}", logs), ("${LOGFILE}", os.path.join(logs, "app.log"))):
    text = text.replace(name, json.dumps(value)[1:-1])  # inside a JSON string: quotes and backslashes escaped
partial = f"{target}.{os.getpid()}.new"  # replaced whole: a server starting beside this one reads a whole file
with open(partial, "w", encoding="utf-8") as f:
    f.write(text)
os.replace(partial, target)
PY
PORT="${LABEL_PORT:-8000}"
export PYTHONUNBUFFERED=1
# python -m rather than the bin/monailabel wrapper, which runs whichever python is first on PATH and splits
# arguments that contain spaces (such as --conf overrides JSON).
exec "$LABEL_VENV/bin/python" -m monailabel.main start_server --app "$APP_DIR" --studies "$STUDIES" \
  --host 127.0.0.1 --port "$PORT" --log_config "$LOG_CONFIG" "$@"
