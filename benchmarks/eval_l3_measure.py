"""L3 localisation and end-to-end SMA on held-out phantoms, through the same code as the CLI.

    python benchmarks/eval_l3_measure.py --seed 2000 --count 40

Each case is written to disk as the generator stores it (NIfTI, RAS or LPS; every coverage,
slice thickness, arms up or down, contrast phase) and measured by `sarcopenia_app.cohort.run_case`.
Besides the generator's own draws, every case with L3 is also measured stored upside down along
z (a flipped slice order, as some exports do). Prints one JSON line per case and the summary
tables for docs/measurements.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.analysis import MeasureOptions, Models, load_models  # noqa: E402
from sarcopenia_app.cohort import CaseInput, run_case  # noqa: E402
from sarcopenia_app.ct_loader import load_ct  # noqa: E402
from sarcopenia_app.level import locate_l3  # noqa: E402
from sarcopenia_app.measurements import measure_slice  # noqa: E402
from sarcopenia_app.phantom import generate_case  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout, write_nifti  # noqa: E402


def write_variant(case, folder: Path, flip_z: bool) -> Path:
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    hu = to_stored(case.hu)
    if flip_z:
        last = affine @ np.array([0, 0, hu.shape[2] - 1, 1.0])
        affine = affine.copy()
        affine[:3, 2] *= -1
        affine[:3, 3] = last[:3]
        hu = np.ascontiguousarray(hu[:, :, ::-1])
    path = folder / f"{case.case_id}{'_zflip' if flip_z else ''}.nii.gz"
    write_nifti(path, hu, affine)
    return path


def locate_record(models: Models, path: Path) -> dict:
    found = locate_l3(models.locator, load_ct(path).image)
    return {"has_l3": found.has_l3, "l3_confidence": found.confidence, "l3_slice_index": found.slice_index,
            "warnings": [found.reason] if found.reason else []}


def score(case, record: dict, flip_z: bool) -> dict:
    n = case.hu.shape[2]
    to_canonical = (lambda k: n - 1 - k) if flip_z else (lambda k: k)
    truth_mid = case.l3_mid_index
    row = {"case": case.case_id + ("_zflip" if flip_z else ""), "coverage": case.acquisition.coverage,
           "slice_mm": float(case.spacing_mm[2]), "arms": case.patient.arms, "phase": case.acquisition.contrast_phase,
           "truth_has_l3": truth_mid is not None, "has_l3": record["has_l3"], "confidence": record["l3_confidence"],
           "reason": "; ".join(w for w in record.get("warnings", []) if w.startswith(("l3_not_found", "L3")))}
    if truth_mid is None or not record["has_l3"]:
        return row
    row.update(locate_scores(case, to_canonical(record["l3_slice_index"])))
    if "sma_cm2" not in record:
        return row
    truth_area = measure_slice(case.hu[:, :, truth_mid], case.muscle[:, :, truth_mid], case.spacing_mm[:2])
    row.update({"sma_cm2": record["sma_cm2"], "truth_area_cm2": round(truth_area.mask_area_cm2, 2),
                "truth_hu_sma_cm2": round(truth_area.sma_cm2, 2),
                "sma_error_pct": round((record["sma_cm2"] - truth_area.mask_area_cm2) / truth_area.mask_area_cm2 * 100, 2),
                "sma_protocol_error_pct": round((record["sma_cm2"] - truth_area.sma_cm2) / truth_area.sma_cm2 * 100, 2)})
    return row


def locate_scores(case, k: int) -> dict:
    """Error of the chosen (canonical) slice against the truth's mid-L3."""
    truth_mid = case.l3_mid_index
    error_mm = abs(case.z_anatomical_mm[k] - case.spine.by_name["L3"].z_mid)
    signed = case.z_anatomical_mm[k] - case.spine.by_name["L3"].z_mid
    return {"error_slices": abs(k - truth_mid), "error_mm": round(float(error_mm), 2), "signed_mm": round(float(signed), 2),
            "inside_l3": k in case.level_slices("L3"), "within_target": bool(abs(k - truth_mid) <= 1 or error_mm <= 3.0)}


def summary(rows) -> str:
    with_l3 = [r for r in rows if r["truth_has_l3"]]
    without = [r for r in rows if not r["truth_has_l3"]]
    found = [r for r in with_l3 if r["has_l3"]]
    errors_mm = np.array([r["error_mm"] for r in found]) if found else np.array([np.nan])
    lines = [f"cases with L3: {len(with_l3)}, found: {len(found)}; "
             f"within 1 slice or 3 mm: {sum(r['within_target'] for r in found)}/{len(with_l3)} "
             f"({100 * sum(r['within_target'] for r in found) / max(len(with_l3), 1):.1f} %); "
             f"outside the L3 body: {sum(not r['inside_l3'] for r in found)}",
             f"L3 error: median {np.median(errors_mm):.1f} mm, 95th pct {np.percentile(errors_mm, 95):.1f} mm, "
             f"max {np.max(errors_mm):.1f} mm",
             f"cases without L3: {len(without)}, reported as such: {sum(not r['has_l3'] for r in without)}"]
    for key, label in (("sma_error_pct", "SMA vs truth area"), ("sma_protocol_error_pct", "SMA vs truth mask at -29..150 HU")):
        if not any(key in r for r in found):
            continue
        errors = np.abs([r[key] for r in found])
        signed = np.array([r[key] for r in found])
        lines.append(f"{label}: absolute error median {np.median(errors):.1f} %, 95th pct {np.percentile(errors, 95):.1f} %, "
                     f"mean signed {signed.mean():+.1f} %")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--muscle-model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--locator-model", default=str(REPO / "model" / "l3_locator.pt"))
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--locate-only", action="store_true", help="localisation figures only (no segmentation)")
    args = parser.parse_args()
    models = load_models(args.muscle_model, args.locator_model)
    rows, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.count):
            case = generate_case(args.seed, index, matrix=args.matrix)
            for flip_z in ((False, True) if case.l3_mid_index is not None else (False,)):
                path = write_variant(case, Path(tmp), flip_z)
                start = time.perf_counter()
                record = (locate_record(models, path) if args.locate_only else
                          run_case(CaseInput(path.name, path), models, MeasureOptions(), Path(tmp) / "out", "cpu"))
                seconds.append(time.perf_counter() - start)
                rows.append(score(case, record, flip_z))
                print(json.dumps(rows[-1]), flush=True)
                path.unlink()
    print(f"\n## Held-out phantoms: seed {args.seed}, {args.count} draws ({len(rows)} measurements incl. z-flipped copies)")
    print(summary(rows))
    print(f"time per case (file to measurements.json, muscle.nii.gz, l3.png): median {np.median(seconds):.1f} s")


if __name__ == "__main__":
    main()
