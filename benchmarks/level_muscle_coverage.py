"""Which muscles the mask misses at each level: per level, on the true mid slice of generated cases,
the truth's muscle area by muscle and how much of it the mask covers, what the HU restriction
takes away, and where the mask's extra area lies (by anatomy label). It explains a per-level SMA
bias that eval_levels.py reports (docs/cohorts.md, "Why T12 reads low").

    python benchmarks/level_muscle_coverage.py --seeds 3100 3200 --count 12 --matrix 160 --cases /tmp/lv/cases160

Cases are written (or reused) exactly as eval_levels.py writes them; areas are per-scan means in cm².
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_levels import written_case  # noqa: E402

from sarcopenia_app.ct_loader import load_ct  # noqa: E402
from sarcopenia_app.level_measurements import MEASURED_LEVELS  # noqa: E402
from sarcopenia_app.measurements import MUSCLE_HU, measure_slice  # noqa: E402
from sarcopenia_app.segment import load_model, predict_mask  # noqa: E402

CONTEXT_SLICES = 3  # segmented beyond the outermost mid slices, so that those have their neighbours


def slice_areas(hu: np.ndarray, mask: np.ndarray, truth: np.ndarray, anatomy: np.ndarray, labels: Dict[int, str],
                pixel_mm: List[float]) -> Dict[str, float]:
    """Areas (cm²) on one slice: truth, mask, mask in the muscle HU range, truth outside it, and per
    anatomy label the truth (`truth:NAME`), its covered part (`covered:NAME`) and the mask's extra
    area there (`extra:NAME`)."""
    pixel_cm2 = pixel_mm[0] * pixel_mm[1] / 100.0
    outside_hu = truth & ((hu < MUSCLE_HU[0]) | (hu > MUSCLE_HU[1]))
    areas = {"truth": truth.sum() * pixel_cm2, "mask": mask.sum() * pixel_cm2,
             "mask_in_hu": measure_slice(hu, mask, pixel_mm).sma_cm2, "truth_outside_hu": outside_hu.sum() * pixel_cm2}
    for label in np.unique(anatomy[truth | mask]):
        where = anatomy == label
        name = labels[int(label)]
        if (truth & where).any():
            areas[f"truth:{name}"] = (truth & where).sum() * pixel_cm2
            areas[f"covered:{name}"] = (truth & mask & where).sum() * pixel_cm2
        if (mask & ~truth & where).any():
            areas[f"extra:{name}"] = (mask & ~truth & where).sum() * pixel_cm2
    return {k: float(v) for k, v in areas.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3100, 3200])
    parser.add_argument("--count", type=int, default=12, help="draws per seed")
    parser.add_argument("--matrix", type=int, default=160)
    parser.add_argument("--cases", type=Path, help="keep the written cases here and reuse them")
    parser.add_argument("--muscle-model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--json", type=Path, help="write the per-level means here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.muscle_model)
    per_level: Dict[str, List[Dict[str, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.cases or Path(tmp)
        for seed, index in ((seed, index) for seed in args.seeds for index in range(args.count)):
            truth, path = written_case(seed, index, args.matrix, folder)
            if not truth["levels"]:
                continue
            hu = nib.load(str(path)).get_fdata()
            anatomy = np.asarray(nib.load(str(folder / truth["files"]["anatomy"])).dataobj)
            muscle = np.asarray(nib.load(str(folder / truth["files"]["muscle"])).dataobj) > 0
            mids = [entry["mid_index"] for entry in truth["levels"].values()]
            z_range = (max(min(mids) - CONTEXT_SLICES, 0), min(max(mids) + CONTEXT_SLICES + 1, hu.shape[2]))
            mask = predict_mask(model, load_ct(path).image, z_range=z_range) > 0
            labels = {value: name for name, value in truth["anatomy_labels"].items()}
            for name, entry in truth["levels"].items():
                k = entry["mid_index"]
                per_level[name].append(slice_areas(hu[:, :, k], mask[:, :, k], muscle[:, :, k], anatomy[:, :, k],
                                                   labels, truth["spacing_mm"][:2]))
            print(truth["id"], flush=True)
    means = {}
    for name in [n for n in MEASURED_LEVELS if per_level[n]]:
        rows = per_level[name]
        keys = sorted({k for row in rows for k in row})
        means[name] = {"cases": len(rows), **{k: round(sum(row.get(k, 0.0) for row in rows) / len(rows), 2) for k in keys}}
        m = means[name]
        print(f"\n{name} ({m['cases']} cases), cm² per scan: truth {m['truth']}, mask {m['mask']}, "
              f"mask in HU range {m['mask_in_hu']}, truth outside the HU range {m['truth_outside_hu']}")
        for key in (k for k in keys if k.startswith("truth:")):
            muscle_name = key.split(":", 1)[1]
            print(f"   {muscle_name:24s} truth {m[key]:6.2f}  covered {m.get('covered:' + muscle_name, 0.0):6.2f}")
        extras = sorted((k for k in keys if k.startswith("extra:")), key=lambda k: -m[k])[:6]
        print("   extra: " + ", ".join(f"{k.split(':', 1)[1]} {m[k]:.2f}" for k in extras))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "muscle_model": args.muscle_model,
                                         "levels": means}, indent=1))


if __name__ == "__main__":
    main()
