#!/usr/bin/env bash
# The GPU check: on a machine with one CUDA GPU, run the quick profiles of the three
# torch tasks with scaling.use_gpu=true, then the Lego sketch's Store/Query benchmark on
# the GPU, and write one JSON of wall times, accuracies (each run's front and best
# objective values, from `pipeline.run --summary`) and throughputs.
#
#   scripts/gpu_check.sh [--out gpu_check.json]        # needs CUDA; about 10 minutes at most
#   scripts/gpu_check.sh --cpu [--out cpu_check.json]  # dry run on CPU: same steps, shrunk
#   GPU_CHECK_DEVICE=cpu scripts/gpu_check.sh          # the same as --cpu
#
# Without a CUDA device (or with a CPU-only torch) the GPU mode stops at once with one
# line on stderr and exit status 2, before starting anything. Each step has a time limit
# (GPU_CHECK_TASK_TIMEOUT seconds per task, default 150; GPU_CHECK_BENCH_TIMEOUT for the
# benchmark, default 90), so the whole check ends within 10 minutes; a step that runs out
# of time is recorded as such (rc 124) and the JSON is still written. Exit status: 0 when
# every step succeeded, 1 otherwise, 2 for bad usage or no GPU.
#
# In --cpu mode the tasks run with use_gpu=false (Ray has no GPU to give a trial) and
# tiny sizes: it checks the script, the commands and the JSON, not the GPU path.
# Every run goes to a private MLflow store and Ray results folder under the work folder
# (GPU_CHECK_WORK, default a new folder in /tmp), never to mlflow/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
MODE="${GPU_CHECK_DEVICE:-cuda}"
OUT="gpu_check.json"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) MODE=cpu; shift ;;
    --out) [[ $# -ge 2 ]] || { echo "gpu_check: --out needs a path" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (valid: --cpu, --out PATH)" >&2; exit 2 ;;
  esac
done
case "$MODE" in
  cuda|gpu) MODE=cuda ;;
  cpu) ;;
  *) echo "gpu_check: GPU_CHECK_DEVICE='$MODE' is not cpu or cuda" >&2; exit 2 ;;
esac
[[ -d "$(dirname "$OUT")" ]] || { echo "gpu_check: --out: folder $(dirname "$OUT") does not exist" >&2; exit 2; }
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"

if [[ "$MODE" == cuda ]]; then
  # one line naming why, before anything starts
  if ! reason="$("$PY" - <<'EOF' 2>&1
import sys
import torch
if torch.version.cuda is None:
    sys.exit(f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device (torch.cuda.is_available() is False)")
EOF
)"; then
    echo "gpu_check: no CUDA GPU: $(echo "$reason" | tail -n 1); run scripts/gpu_check.sh --cpu for the CPU dry run" >&2
    exit 2
  fi
fi

WORK="${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$WORK"
export MLFLOW_TRACKING_URI="sqlite:///$WORK/mlflow.db"
export PIPELINE_RESULTS="$WORK/ray_results"
unset OPTUNA_STORAGE RAY_ADDRESS
TASK_TIMEOUT="${GPU_CHECK_TASK_TIMEOUT:-150}"
BENCH_TIMEOUT="${GPU_CHECK_BENCH_TIMEOUT:-90}"
cd "$ROOT"

if [[ "$MODE" == cuda ]]; then
  COMMON=(scaling.use_gpu=true)
  LEGO=()
  NN=()
  FREQ=()
  BENCH=(--device cuda)
else
  COMMON=(scaling.use_gpu=false)
  LEGO=(params.steps=4 params.report_every=2 params.tasks_per_step=2 params.distinct_max=3000
        params.query_per_task=128 params.eval_distinct=2000 "params.eval_brick_counts=[3]"
        "params.eval_skews=[1.1]" "params.methods=[lego, countmin]" search.num_samples=1)
  NN=(params.n=8 params.steps=4 params.eval_every=4 params.width=16 params.layers=1 params.query_hidden=32
      params.batch_size=16 params.monitor_instances=32 params.eval_instances=64 search.num_samples=1)
  FREQ=(params.steps=4 params.eval_every=2 params.hidden=16 params.embed_dim=8 params.predictor_hidden=8
        params.batch_size=16 params.val_streams=20 params.eval_streams=40 search.num_samples=1)
  BENCH=(--device cpu --items 20000 --batch 8192 --repeats 1 --tiny-steps 2)
fi

STEPS="$WORK/steps.tsv"
: > "$STEPS"
START=$(date +%s.%N)

# name, timeout, log, command...: appends "name<TAB>rc<TAB>wall_s<TAB>command" to steps.tsv
step() {
  local name="$1" limit="$2"; shift 2
  local t0 t1 rc=0
  echo "gpu_check: $name: $*" >&2
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN {print $t1 - $t0}")" "$*" >> "$STEPS"
  [[ $rc -eq 0 ]] || echo "gpu_check: $name exited $rc (log: $WORK/$name.log)" >&2
}

step lego "$TASK_TIMEOUT" "$PY" -m pipeline.run tasks/lego.yaml "${COMMON[@]}" "${LEGO[@]}" --summary "$WORK/lego.json"
step nn_uniform_1d "$TASK_TIMEOUT" "$PY" -m pipeline.run tasks/nn_uniform_1d.yaml "${COMMON[@]}" "${NN[@]}" \
  --summary "$WORK/nn_uniform_1d.json"
step freq_zipf "$TASK_TIMEOUT" "$PY" -m pipeline.run tasks/freq_zipf.yaml "${COMMON[@]}" "${FREQ[@]}" \
  --summary "$WORK/freq_zipf.json"
step lego_bench "$BENCH_TIMEOUT" "$PY" -m pipeline.bench lego "${BENCH[@]}" --json "$WORK/lego_bench.json"

TOTAL=$(awk "BEGIN {print $(date +%s.%N) - $START}")
"$PY" - "$MODE" "$WORK" "$OUT" "$TOTAL" <<'EOF'
"""Collect the steps' summaries into one JSON (written to a temporary name, then renamed)."""
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

mode, work, out, total = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
steps = {}
for line in (work / "steps.tsv").read_text().splitlines():
    name, rc, wall, command = line.split("\t", 3)
    steps[name] = {"rc": int(rc), "wall_s": float(wall), "command": command, "log": str(work / f"{name}.log")}

tasks = {}
for name in ("lego", "nn_uniform_1d", "freq_zipf"):
    row = dict(steps.get(name, {"rc": None}))
    path = work / f"{name}.json"
    if path.exists():
        s = json.loads(path.read_text())
        objectives = s["objectives"]
        front = [p["objectives"] for p in s["pareto"]]
        best = {}
        for o in objectives:
            values = [f[o["metric"]] for f in front if math.isfinite(f[o["metric"]])]
            if values:
                best[o["metric"]] = min(values) if o["mode"] == "min" else max(values)
        search_s = s.get("wall_s")
        row.update({
            "search_wall_s": search_s, "trials": s["trial_count"], "trial_states": s["trials"],
            "trials_per_min": 60.0 * s["trial_count"] / search_s if search_s else None,
            "objectives": objectives, "best": best, "front": front, "hypervolume": s.get("hypervolume"),
            "mlflow_parent_run_id": s.get("parent_run_id"),
        })
    tasks[name] = row

bench = dict(steps.get("lego_bench", {"rc": None}))
path = work / "lego_bench.json"
if path.exists():
    results = json.loads(path.read_text())["results"]
    bench["throughput"] = {r["method"]: {"items_per_s": r["items_per_s"], "device": r["device"],
                                         "ratio_to_countmin": r.get("ratio_to_countmin")} for r in results}

device = {"mode": mode, "torch": torch.__version__, "cuda": torch.version.cuda,
          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
          "cpu_cores": os.cpu_count(), "host": platform.node()}
ok = all(step.get("rc") == 0 for step in [*tasks.values(), bench])
report = {"device": device, "total_wall_s": total, "within_10_min": total <= 600.0, "ok": ok,
          "tasks": tasks, "lego_bench": bench, "work": str(work)}
tmp = out.with_name(out.name + ".tmp")
tmp.write_text(json.dumps(report, indent=2))
tmp.replace(out)
print(f"gpu_check: {'ok' if ok else 'FAILED'} in {total:.0f} s ({mode}); written to {out}")
sys.exit(0 if ok else 1)
EOF
