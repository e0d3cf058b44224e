#!/usr/bin/env bash
# The whole comparison grid on the built-in scenes, several runs at once: on a GPU (they share
# the device) or a many-core CPU. From the repository root:
#   bash experiments/grid.sh [NAME]                 (default NAME: synthetic-grid)
# Writes the scenes once (with a held-out test split), then trains every method of
# `cenfusion compare --methods all` for SEEDS seeds, JOBS runs at a time, each run's scores as
# docs/results/NAME/<method>/seed<k>.json (commit them: a later call trains only what is
# missing) and the tables in docs/results/NAME/results.md. A time limit (LIMIT_S) stops the
# grid; the tables are rewritten from whatever finished (--report-only).
#   JOBS (default 6 with CUDA, else 1), SEEDS (3), CONFIG (compare_synthetic_refinenet18),
#   EXTRA (further key=value overrides), LIMIT_S (36000), DATA (data/synthetic-bench).
set -u
name=${1:-synthetic-grid}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cuda=$($py -c 'import torch; print(int(torch.cuda.is_available()))')
jobs=${JOBS:-$([ "$cuda" = 1 ] && echo 6 || echo 1)}
data=${DATA:-data/synthetic-bench}
results=docs/results/$name
config=${CONFIG:-compare_synthetic_refinenet18}
[ -f "$data/test.txt" ] || $py -m cenfusion synth nyudv2 "$data" --n-train 600 --n-val 100 \
    --n-test 200 --no-progress
common=("$config" "data.root=$data" ${EXTRA:-} --methods all --seeds "${SEEDS:-3}"
        --output "runs/$name" --results "$results" --no-progress)
timeout -k 10 "${LIMIT_S:-36000}" $py -m cenfusion compare "${common[@]}" --jobs "$jobs"
$py -m cenfusion compare "${common[@]}" --report-only --markdown "$results/results.md" >/dev/null
echo "tables: $results/results.md"
