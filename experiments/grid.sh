#!/usr/bin/env bash
# The benchmark protocols (docs/benchmark.md), several runs at once: on a GPU (the runs share
# the device) or a many-core CPU. From the repository root:
#   bash experiments/grid.sh [PROTOCOL ...]   (default: every experiments/protocols/*.yaml)
# Each protocol writes its data and preparation once, trains what its results folder lacks
# (every family's tuning rounds on validation, then the paired seeds), JOBS runs at a time,
# each run's scores as one JSON under its results folder (commit them: a later call trains
# only what is missing), and rewrites its report (RESULTS/README.md and the exchange figures).
# A time limit per protocol (LIMIT_S) stops the runs; cut runs resume on the next call.
#   JOBS (default 6 with CUDA, else 1), THREADS (torch threads per run; default: the cores
#   divided by JOBS on a CPU, all with CUDA), LIMIT_S (36000).
set -u
py=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cuda=$($py -c 'import torch; print(int(torch.cuda.is_available()))')
jobs=${JOBS:-$([ "$cuda" = 1 ] && echo 6 || echo 1)}
threads=()
if [ -n "${THREADS:-}" ]; then
    threads=(--threads "$THREADS")
elif [ "$cuda" = 0 ]; then
    threads=(--threads "$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))")
fi
protocols=("$@")
[ ${#protocols[@]} -gt 0 ] || protocols=(experiments/protocols/*.yaml)
for protocol in "${protocols[@]}"; do
    echo "== $protocol"
    $py -m cenfusion protocol run "$protocol" --jobs "$jobs" "${threads[@]}" \
        --limit-s "${LIMIT_S:-36000}"
    $py -m cenfusion protocol report "$protocol"
done
