#!/usr/bin/env bash
# The analyses behind "What holds at this scale" in studies/bundled/README.md, exactly as run
# (2 shared CPU cores, one at a time; about 15 minutes in all). Run from the repository root.
# Outputs go to results/bundled/ (git-ignored): each command's JSON and its folder of plots.
set -euo pipefail
AB=".venv/bin/atlas-bayes"
T=data/bundled_study.csv
O=results/bundled
S="--chains 2 --draws 500 --warmup 500 --seed 0"
mkdir -p "$O"
run() { echo "+ $*" >&2; nice -n 10 "$@"; }

# Run tables picked by run_id (the card: "choose one by run_id").
# Scratch runs only: the laws read n_tokens as the run's own tokens in its mixture, and a
# finetune's n_tokens include its ml8 checkpoint's 32M bytes (as es or pt, which they were not).
grep -v '^ft-' "$T" > "$O/scratch_runs.csv"
# BTS: one monolingual run per (language, size), the longest uncapped one (t0 16M, t1 32M bytes,
# the same budgets as the bilingual runs), and the 50/50 bilingual runs.
grep -E '^(run_id|mono-[a-z]+-t0-D16M|mono-[a-z]+-t1-D32M|bi-[a-z]+-[a-z]+-t[01]-D[0-9]+M),' "$T" \
    > "$O/transfer_runs.csv"
# Curse: uncapped monolingual runs (K = 1) and the ml4 / ml8 mixtures (K = 4, 8).
grep -E '^(run_id|mono-[a-z]+-t[012]-D[0-9]+M|ml[48]-t[012]-D[0-9]+M),' "$T" > "$O/curse_runs.csv"
# Crossover: es and pt at t1, scratch monolingual runs and finetunes from ml8-t1-D32M.
grep -E '^(run_id|mono-(es|pt)-t1-D[0-9]+M|ft-(es|pt)-t1-D[0-9]+M-from-ml8-t1-D32M),' "$T" \
    > "$O/crossover_runs.csv"

# 1. ATLAS vs baselines for es: the paper's held-out R2 on splits random, N, D, C, and PSIS-LOO.
run $AB compare "$O/scratch_runs.csv" --laws chinchilla,dcsl,msl,atlas --lang es $S \
    --out "$O/compare-es" --json > "$O/compare-es.json"
#    The M split (unseen ml4/ml8 mixtures), after the fix that lets it be built for es alone.
run $AB compare "$O/scratch_runs.csv" --laws chinchilla,dcsl,msl,atlas --lang es --split M --no-loo \
    $S --out "$O/compare-es-M" --json > "$O/compare-es-M.json"
#    R-hat and divergences of the ATLAS fit on all es rows (compare reports only a flag).
run $AB fit "$O/scratch_runs.csv" --law atlas --lang es $S --out "$O/fit-atlas-es" --json \
    > "$O/fit-atlas-es.json"

# 2. Transfer matrix from the bilingual pairs at t1 (1.08M parameters).
run $AB transfer "$O/transfer_runs.csv" --target es,pt,it,fr,ar,vi,en --n-params 1083008 $S \
    --out "$O/transfer-t1" --json > "$O/transfer-t1.json"

# 3. Curse of multilinguality, pooled law, K = 1 -> 4 (compute-optimal start).
run $AB curse "$O/curse_runs.csv" --from-k 1 --to-k 4 $S --out "$O/curse" --json > "$O/curse.json"

# 4. Crossover for es at t1 (scratch vs finetune from ml8-t1-D32M), 32M-byte planned budget.
run $AB crossover "$O/crossover_runs.csv" --lang es --n-params 1083008 --budget 3.2e7 $S \
    --out "$O/crossover-es" --json > "$O/crossover-es.json"

# 5. One design round: which 2 runs (t0-t2 shapes) to buy next to pin down es loss at t2 and
#    64M bytes, Chinchilla fitted to the scratch es rows.
run $AB design "$O/scratch_runs.csv" --law chinchilla --lang es --target loss@N=6361344,D=6.7e7 \
    --shapes t0,t1,t2 --tokens 4e6,8e6,1.6e7,3.2e7,6.4e7 --budget 3e15 --k 2 $S \
    --out "$O/design-es" --json > "$O/design-es.json"

# Added after the first pass: the same crossover fit reported for pt, and the transfer matrix at t0.
run $AB crossover "$O/crossover_runs.csv" --lang pt --n-params 1083008 --budget 3.2e7 $S \
    --out "$O/crossover-pt" --json > "$O/crossover-pt.json"
run $AB transfer "$O/transfer_runs.csv" --target es,pt,it,fr,ar,vi,en --n-params 123456 $S \
    --out "$O/transfer-t0" --json > "$O/transfer-t0.json"
