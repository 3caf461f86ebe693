#!/usr/bin/env bash
# Serve the MLflow UI over the pipeline's store, on 127.0.0.1 only.
#
#   bash mlflow/serve.sh                      # http://127.0.0.1:5000 over mlflow/mlflow.db
#   bash mlflow/serve.sh --store /abs/path/mlflow.db --port 5001 [--host 0.0.0.0]
#
# Lean settings for small machines: one worker, MLflow's job execution off.
# The Optuna studies live beside the store (optuna.db):
#   .venv/bin/optuna-dashboard sqlite:///$PWD/mlflow/optuna.db --host 127.0.0.1 --port 8080
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
store="$here/mlflow.db"
port=5000
host=127.0.0.1
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    *) echo "serve.sh: unknown option $1 (use --store PATH, --port N, --host ADDR)" >&2; exit 2 ;;
  esac
done
case "$store" in /*) ;; *) store="$PWD/$store" ;; esac
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec "$python" -m mlflow server \
  --backend-store-uri "sqlite:///$store" \
  --artifacts-destination "file://$(dirname "$store")/artifacts" \
  --host "$host" --port "$port" --workers 1
