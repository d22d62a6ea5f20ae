"""Accuracy of the muscle model and the classical baseline on held-out phantoms, and inference
speed and memory from file to mask.

    python benchmarks/eval_muscle.py --model model/muscle_seg.pt --seed 2000 --count 20
    python benchmarks/eval_muscle.py --model model/muscle_seg.pt --speed

Held-out cases use seeds the default model never saw (it trains on 1000+) and the generator's
full variation; cases without L3 are counted and skipped. Dice is computed on the mid-L3 slice
and over the slices of the L3 body; SMA errors are absolute percentage errors on the mid-L3 slice:
of the raw mask area and of the clinical SMA (-29..150 HU) against the truth area, and of the
clinical SMA against the same HU protocol applied to the truth mask.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.baseline import segment_muscle_volume  # noqa: E402
from sarcopenia_app.measurements import measure_slice  # noqa: E402
from sarcopenia_app.phantom import generate_case  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout, write_nifti  # noqa: E402
from sarcopenia_app.segment import load_model, predict_mask  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    denominator = a.sum() + b.sum()
    return float(2 * (a & b).sum() / denominator) if denominator else 1.0


def held_out_cases(seed: int, count: int, variation: str = "standard", matrix: int = 512, max_slices: int = 160):
    """Cases with L3 among `count` draws of `seed` (the others are reported and skipped)."""
    for index in range(count):
        case = generate_case(seed, index, matrix=matrix, max_slices=max_slices, variation=variation)
        if case.l3_mid_index is None:
            print(f"{case.case_id}: no L3 in the scan, skipped", flush=True)
            continue
        yield case


def score_case(case, model) -> dict:
    """Dice and SMA error of the network (if given) and the baseline on the L3 slab of one case."""
    k = case.l3_mid_index
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    hu, truth = to_stored(case.hu), to_stored(case.muscle)
    first, last = min(case.level_slices("L3")), max(case.level_slices("L3"))
    z0, z1 = max(first - 1, 0), min(last + 2, hu.shape[2])
    masks = {}
    if model is not None:
        image = MetaTensor(torch.from_numpy(hu[None].astype(np.float32)), affine=torch.from_numpy(affine))
        masks["net"] = predict_mask(model, image, z_range=(z0, z1))
    baseline = np.zeros_like(truth)
    baseline[:, :, z0:z1] = segment_muscle_volume(hu[:, :, z0:z1], list(case.spacing_mm))
    masks["baseline"] = baseline
    pixel_mm = case.spacing_mm[:2]
    truth_measured = measure_slice(hu[:, :, k], truth[:, :, k], pixel_mm)  # the protocol applied to the truth
    truth_sma = truth_measured.mask_area_cm2
    row = {"case": case.case_id, "sex": case.patient.sex, "bmi": round(case.patient.bmi, 1),
           "phase": case.acquisition.contrast_phase, "arms": case.patient.arms, "truth_sma_cm2": round(truth_sma, 1),
           "truth_hu_sma_cm2": round(truth_measured.sma_cm2, 1),
           "hu_restriction_bias_pct": round((truth_measured.sma_cm2 - truth_sma) / truth_sma * 100, 2)}
    for name, mask in masks.items():
        measured = measure_slice(hu[:, :, k], mask[:, :, k], pixel_mm)
        row[f"{name}_dice_mid"] = dice(mask[:, :, k], truth[:, :, k])
        row[f"{name}_dice_slab"] = dice(mask[:, :, first:last + 1], truth[:, :, first:last + 1])
        row[f"{name}_sma_ape"] = abs(measured.mask_area_cm2 - truth_sma) / truth_sma * 100
        row[f"{name}_sma_hu_ape"] = abs(measured.sma_cm2 - truth_sma) / truth_sma * 100
        row[f"{name}_sma_protocol_ape"] = abs(measured.sma_cm2 - truth_measured.sma_cm2) / truth_measured.sma_cm2 * 100
    return row


def summary_table(rows, methods) -> str:
    lines = ["| method | Dice mid-L3 median (min) | Dice L3 slab median (min) | mask-area error median / 95th pct "
             "| SMA (-29..150 HU) vs truth area: median / 95th pct "
             "| SMA vs truth mask at -29..150 HU: median / 95th pct |",
             "|---|---|---|---|---|---|"]
    for name, label in methods:
        mid = np.array([r[f"{name}_dice_mid"] for r in rows])
        slab = np.array([r[f"{name}_dice_slab"] for r in rows])
        ape = np.array([r[f"{name}_sma_ape"] for r in rows])
        hu_ape = np.array([r[f"{name}_sma_hu_ape"] for r in rows])
        protocol = np.array([r[f"{name}_sma_protocol_ape"] for r in rows])
        lines.append(f"| {label} | {np.median(mid):.3f} ({mid.min():.3f}) | {np.median(slab):.3f} ({slab.min():.3f}) "
                     f"| {np.median(ape):.1f} % / {np.percentile(ape, 95):.1f} % "
                     f"| {np.median(hu_ape):.1f} % / {np.percentile(hu_ape, 95):.1f} % "
                     f"| {np.median(protocol):.1f} % / {np.percentile(protocol, 95):.1f} % |")
    bias = np.array([r["hu_restriction_bias_pct"] for r in rows])
    lines.append(f"\nThe -29..150 HU restriction applied to the truth mask changes its area by {np.median(bias):+.1f} % "
                 f"(median; range {bias.min():+.1f} .. {bias.max():+.1f} %): intramuscular fat, partial volume, noise.")
    return "\n".join(lines)


def evaluate(model_path: str, seed: int, count: int) -> None:
    model = load_model(model_path)
    rows = []
    for case in held_out_cases(seed, count):
        rows.append(score_case(case, model))
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
    print(f"\n## Held-out phantoms: seed {seed}, {len(rows)} of {count} cases have L3\n")
    print(summary_table(rows, (("net", "muscle_seg (network)"), ("baseline", "muscle_threshold (classical)"))))


def measure_one(model_path: str, image_path: str) -> None:
    """Runs in its own process so that peak memory belongs to one inference."""
    start = time.perf_counter()
    img = nib.load(image_path)
    volume = np.asarray(img.dataobj, dtype=np.float32)
    image = MetaTensor(torch.from_numpy(volume[None]), affine=torch.from_numpy(img.affine))
    model = load_model(model_path)
    mask = predict_mask(model, image)
    nib.save(nib.Nifti1Image(mask, img.affine), str(Path(image_path).with_suffix(".mask.nii.gz")))
    elapsed = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(json.dumps({"shape": list(volume.shape), "seconds": round(elapsed, 1), "peak_rss_gib": round(peak_gib, 2),
                      "threads": torch.get_num_threads()}))


def speed(model_path: str) -> None:
    print("## Inference from file to mask on this machine (whole volume)")
    with tempfile.TemporaryDirectory() as tmp:
        for slices in (100, 300):
            case = generate_case(77, 0, max_slices=slices, acquisition_overrides={
                "coverage": "chest_abdomen_pelvis", "slice_spacing_mm": 1.25, "slice_thickness_mm": 1.25})
            affine, to_stored = stored_layout(case, "LPS")
            path = Path(tmp) / f"ct_{slices}.nii.gz"
            write_nifti(path, to_stored(case.hu), affine)
            out = subprocess.run([sys.executable, __file__, "--model", model_path, "--measure", str(path)],
                                 capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_one(args.model, args.measure)
    elif args.speed:
        speed(args.model)
    else:
        evaluate(args.model, args.seed, args.count)


if __name__ == "__main__":
    main()
