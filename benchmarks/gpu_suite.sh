#!/usr/bin/env bash
# Every GPU measurement of the project in one go, for a GPU machine with the project installed:
#
#   bash benchmarks/gpu_suite.sh OUT_DIR [DATA_DIR] [METHODS]
#
# DATA_DIR: a folder with LR/ and HR/ (the DRealSR pairs) for the end-to-end benchmark (skipped
# without it). METHODS: what `harness profile` measures (default below). Each step has its own
# time limit, so one slow step cannot starve the others; logs and JSON land in OUT_DIR.
set -u
out=${1:?usage: gpu_suite.sh OUT_DIR [DATA_DIR] [METHODS]}
data=${2:-}
methods=${3:-bicubic,realesrgan,adcsr,sinsr}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export HARNESS_NO_PROGRESS=1

step() {
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit} s): $*"
    start=$(date +%s)
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "   exit $rc after $(($(date +%s) - start)) s"
    tail -n 25 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step gpu_check "${GPU_CHECK_LIMIT:-230}" python benchmarks/gpu_check.py --out "$out/gpu_check.json"
if [ -n "$data" ]; then
    step end_to_end "${E2E_LIMIT:-200}" python benchmarks/bench_end_to_end.py --device cuda \
        --data "$data" --json "$out/end_to_end.json"
fi
# from another folder: the checkout's harness/ must not shadow the installed package
step profile "${PROFILE_LIMIT:-110}" env -C /tmp python -m harness profile --methods "$methods" --random-init \
    --device cuda --out "$out/profile"
