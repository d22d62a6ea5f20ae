"""Per-level measurements (T12..L5) and the L1-L5 muscle volume against the phantom's truth.

    python benchmarks/eval_levels.py --seeds 3100 3200 --count 12 --matrix 160 --json docs/levels_benchmark.json

(--count draws of each seed; seeds never trained on: the locator trains on 4000.)

Each case is written as the generator stores it (NIfTI, with its sidecar's per-level truth) and
measured by `sarcopenia_app.cohort.run_case` with ``levels="all"``, the CLI's ``--levels all``.
Per level: whether "in view" agrees with the truth (the level's middle scanned), the chosen
slice's distance from the true mid slice (mm), and the SMA error against the true muscle area on
the true mid slice; for the volume, the relative error where both report one. Writes the raw
rows and the summary as JSON and prints the summary. `--locate-only` runs the locator and the
in-view rule alone (no segmentation, so no SMA or volume): a cheap check of a locator's levels.
`--pool A.json B.json ...` prints the summary of earlier runs' rows together (measures nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.analysis import MeasureOptions, load_models  # noqa: E402
from sarcopenia_app.cohort import CaseInput, run_case  # noqa: E402
from sarcopenia_app.ct_loader import load_ct  # noqa: E402
from sarcopenia_app.level import locate_l3  # noqa: E402
from sarcopenia_app.level_measurements import MEASURED_LEVELS, level_positions  # noqa: E402
from sarcopenia_app.phantom import generate_case, write_case  # noqa: E402


def written_case(seed: int, index: int, matrix: int, folder: Path) -> tuple:
    """(truth, image path) of a generated case written to `folder`, reusing an earlier write there."""
    sidecar = folder / f"{seed}_{index:04d}_{matrix}.truth.json"
    if sidecar.exists():
        truth = json.loads(sidecar.read_text())
    else:
        folder.mkdir(parents=True, exist_ok=True)
        truth = write_case(generate_case(seed, index, matrix=matrix), folder, "nifti", "none", False)
        sidecar.write_text(json.dumps(truth))
    return truth, folder / truth["files"]["image"]


def score(truth: dict, record: dict) -> dict:
    spacing_z = truth["spacing_mm"][2]
    row = {"case": truth["id"], "coverage": truth["coverage"], "slices": truth["shape"][2], "spacing_z_mm": spacing_z}
    for name in MEASURED_LEVELS:
        expected = truth["levels"].get(name)
        found = (record.get("levels") or {}).get(name) or {"in_view": False}
        entry = {"truth_in_view": expected is not None, "found_in_view": bool(found.get("in_view"))}
        if expected and found.get("in_view"):
            entry["slice_error_mm"] = round((found["slice_index"] - expected["mid_index"]) * spacing_z, 1)
        if expected and "sma_cm2" in found:
            entry["sma_error_pct"] = round(100 * (found["sma_cm2"] - expected["sma_cm2"]) / expected["sma_cm2"], 1)
        row[name] = entry
    volume, expected_volume = record.get("muscle_volume_l1_l5_cm3"), truth["muscle_volume_l1_l5_cm3"]
    row["volume"] = {"truth": expected_volume, "found": volume,
                     "error_pct": None if volume is None or expected_volume is None
                     else round(100 * (volume - expected_volume) / expected_volume, 1)}
    return row


def locate_levels(models, path: Path) -> dict:
    """The record's `levels` from the locator alone: where each level's slice would be measured."""
    location = locate_l3(models.locator, load_ct(path).image)
    levels = {name: {"in_view": p.in_view, "reason": p.reason} if not p.in_view else
              {"in_view": True, "slice_index": int(np.rint(p.mid_slice))}
              for name, p in level_positions(location.row_levels, location.row_slices, location.row_body_probability,
                                             location.l3_mid_row).items()}
    levels["L3"] = ({"in_view": True, "slice_index": location.slice_index} if location.has_l3 else
                    {"in_view": False, "reason": location.reason})  # as run_case: L3 is the L3 result
    return {"levels": levels, "muscle_volume_l1_l5_cm3": None}


def summarise(rows: list) -> dict:
    summary = {}
    for name in MEASURED_LEVELS:
        entries = [r[name] for r in rows]
        both = [e for e in entries if "slice_error_mm" in e]
        summary[name] = {
            "truth_in_view": sum(e["truth_in_view"] for e in entries),
            "agree_in_view": sum(e["truth_in_view"] == e["found_in_view"] for e in entries),
            "found_not_in_truth": sum(e["found_in_view"] and not e["truth_in_view"] for e in entries),
            "missed": sum(e["truth_in_view"] and not e["found_in_view"] for e in entries),
            "slice_abs_error_mm_median": _median([abs(e["slice_error_mm"]) for e in both]),
            "slice_abs_error_mm_max": max([abs(e["slice_error_mm"]) for e in both], default=None),
            "slices_over_6_mm": sum(abs(e["slice_error_mm"]) > 6 for e in both),
            "slices_over_10_mm": sum(abs(e["slice_error_mm"]) > 10 for e in both),
            "sma_abs_error_pct_median": _median([abs(e["sma_error_pct"]) for e in both if "sma_error_pct" in e]),
            "sma_error_pct_mean": _mean([e["sma_error_pct"] for e in both if "sma_error_pct" in e]),
        }
    summary["all_levels"] = {key: sum(summary[name][key] for name in MEASURED_LEVELS)
                             for key in ("slices_over_10_mm", "slices_over_6_mm", "found_not_in_truth", "missed")}
    volumes = [r["volume"] for r in rows]
    errors = [v["error_pct"] for v in volumes if v["error_pct"] is not None]
    summary["volume_l1_l5"] = {
        "truth_covered": sum(v["truth"] is not None for v in volumes),
        "both_reported": len(errors),
        "reported_not_in_truth": sum(v["found"] is not None and v["truth"] is None for v in volumes),
        "abs_error_pct_median": _median([abs(e) for e in errors]), "error_pct_mean": _mean(errors)}
    return summary


def _median(values: list):
    return round(float(np.median(values)), 1) if values else None


def _mean(values: list):
    return round(float(np.mean(values)), 1) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3100])
    parser.add_argument("--count", type=int, default=16, help="draws per seed")
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write rows and summary here")
    parser.add_argument("--cases", type=Path, help="keep the written cases here and reuse them (runs comparing locators)")
    parser.add_argument("--locate-only", action="store_true", help="locator and in-view rule only, no segmentation")
    parser.add_argument("--muscle-model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--locator-model", default=str(REPO / "model" / "l3_locator.pt"))
    parser.add_argument("--pool", type=Path, nargs="+", help="summarise the rows of these earlier --json files together "
                        "(several seeds' runs); measures nothing")
    args = parser.parse_args()
    if args.pool:
        rows = [row for path in args.pool for row in json.loads(path.read_text())["rows"]]
        print(json.dumps({"scans": len(rows), **summarise(rows)}, indent=1))
        return
    models = load_models(args.muscle_model, args.locator_model)
    rows, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed, index in ((seed, index) for seed in args.seeds for index in range(args.count)):
            truth, path = written_case(seed, index, args.matrix, args.cases or Path(tmp))
            start = time.perf_counter()
            record = (locate_levels(models, path) if args.locate_only else
                      run_case(CaseInput(truth["id"], path), models, MeasureOptions(levels="all"), Path(tmp) / "out", "cpu"))
            seconds.append(time.perf_counter() - start)
            rows.append(score(truth, record))
            print(json.dumps(rows[-1]), flush=True)
            if not args.cases:
                path.unlink()
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    if args.json:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "commit": commit, "machine": platform.platform(),
            "seconds_per_case_median": round(float(np.median(seconds)), 1), "summary": summary, "rows": rows},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
