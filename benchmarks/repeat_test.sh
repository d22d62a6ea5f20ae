#!/usr/bin/env bash
# Runs one pytest selection N times in fresh interpreters and prints how many runs passed:
# the check for tests that fail now and then (e.g. the multi-process training teardown).
#   benchmarks/repeat_test.sh 30 tests/test_muscle_seg.py -k two_process_gloo
set -uo pipefail
cd "$(dirname "$0")/.."
runs=$1; shift
passed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if .venv/bin/python -m pytest -q -p no:cacheprovider "$@" > /tmp/repeat_test_run.log 2>&1; then
        passed=$((passed + 1)); status=passed
    else
        status=FAILED; tail -30 /tmp/repeat_test_run.log
    fi
    echo "run $i: $status in $(( $(date +%s) - start )) s"
done
echo "$passed of $runs runs passed"
