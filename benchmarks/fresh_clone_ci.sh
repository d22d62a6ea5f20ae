#!/usr/bin/env bash
# Clones this repository's HEAD into a fresh folder, runs the CI command there (`bash .ci/run`) and
# prints one line: commit, exit status, total seconds, load average before and after, pytest's count.
# The clone (with its ~8.5 GB venv) is removed afterwards and only DIR.log is kept: three clones left
# behind once filled the disk that the project's own CI then ran on.
#   for n in 1 2 3; do benchmarks/fresh_clone_ci.sh /tmp/ci/run$n; done   # three in a row
set -u
dir=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
git clone -q "$repo" "$dir"
cd "$dir"
commit=$(git rev-parse --short HEAD)
start=$(date +%s); load0=$(cut -d' ' -f1-3 /proc/loadavg)
bash .ci/run > "$dir.log" 2>&1; rc=$?
cd /; rm -rf "$dir"
echo "$(basename "$dir") commit=$commit rc=$rc total_s=$(( $(date +%s) - start )) load_before=$load0" \
     "load_after=$(cut -d' ' -f1-3 /proc/loadavg) $(grep -E '[0-9]+ passed' "$dir.log" | tail -1)"
exit $rc
