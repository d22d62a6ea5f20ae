"""Cohort throughput of `sarcopenia measure` on a local Dask cluster: 1 worker against 2.

    python benchmarks/cohort_throughput.py --count 8 --json docs/cohort_throughput.json

Generates `count` phantom cases once, then runs the real command (a fresh output folder per run,
so nothing is skipped) with each worker count. Wall time includes starting the cluster and
loading the models in every worker; the run log gives the seconds per case. The load average
before and after each run is recorded: on a shared machine other people's jobs are in the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.phantom import write_dataset  # noqa: E402


def run(inputs: Path, out: Path, workers: int) -> dict:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "sarcopenia_app.cli", "measure", str(inputs), "--out", str(out),
                             "--workers", str(workers), "--device", "cpu"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    log = list(csv.DictReader(open(out / "run_log.csv")))
    per_case = [float(row["seconds"]) for row in log]
    return {"workers": workers, "cases": len(log), "wall_s": round(wall, 1),
            "cases_per_minute": round(60 * len(log) / wall, 2),
            "seconds_per_case_median": round(float(np.median(per_case)), 1),
            "statuses": sorted({row["status"] for row in log}),
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3200)
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--max-slices", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        write_dataset(inputs, args.count, args.seed, matrix=args.matrix, max_slices=args.max_slices, label_slices="none")
        runs = [run(inputs, Path(tmp) / f"out_{workers}", workers) for workers in args.workers]
    for row in runs:
        print(json.dumps(row))
    if args.json:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "commit": commit, "machine": platform.platform(),
                                         "cpu_count": os.cpu_count(), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
