"""Accuracy a reader can trust: L3 finding, muscle Dice, SMA and muscle HU on held-out phantoms of
several seeds and variations, including the stress split, for one or more muscle models.

    python benchmarks/eval_robust.py --models model/muscle_seg.pt /tmp/issue12/stream/best.pt \
        --splits standard:2000:20 wide:2100:20 wide:2200:20 stress:2300:20 --out docs/eval_robust.json

Each split is VARIATION:SEED:DRAWS (seeds never trained on: the muscle model trains on 1000 and
5000..5007, the locator on 4000). Cases are 512x512, stored as the generator stores them (RAS or
LPS). Per case: the locator's answer on the whole scan (false "no L3", slice outside the L3 body,
error in mm, scans without L3 reported); per model, on the truth's mid-L3 slice: Dice, the SMA
(mask restricted to -29..150 HU) against the truth area, the mean HU of the mask before and after
the HU restriction and after the border refinement (`measurements.refine_border`); end to end,
the SMA (border-refined) on the slice the locator chose against the truth area at mid-L3; and the
SMA against the truth mask under the same HU protocol (`sma_protocol_error_pct`). `+flip` rows are the same
model with test-time left-right flipping. Writes one JSON line per case as it goes and the summary.
`--locate-only` scores the locator alone (no muscle model): the cheap check of a new locator.

    python benchmarks/eval_robust.py --locate-only --locator model/l3_locator.pt /tmp/new_locator.pt \
        --matrix 192 --splits standard:2000:12 wide:2100:12 stress:2300:12 --out /tmp/locate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.level import load_locator, locate_l3  # noqa: E402
from sarcopenia_app.measurements import measure_slice, metal_suspected, refine_border  # noqa: E402
from sarcopenia_app.phantom import generate_case  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout  # noqa: E402
from sarcopenia_app.segment import load_model, predict_mask  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def location_row(case, location) -> dict:
    truth = case.l3_mid_index
    row = {"truth_has_l3": truth is not None, "has_l3": location.has_l3, "confidence": location.confidence,
           "reason": location.reason}
    if truth is not None and location.has_l3:
        k = location.slice_index  # stored index = canonical index: the generator stores slices inferior first
        row.update({"chosen": k, "inside_l3": k in case.level_slices("L3"),
                    "error_mm": round(float(abs(case.z_anatomical_mm[k] - case.spine.by_name["L3"].z_mid)), 2)})
    return row


def model_rows(case, image, hu, truth, location, models) -> dict:
    k = case.l3_mid_index
    slab = case.level_slices("L3")
    chosen = location.slice_index if location.has_l3 else k
    z0, z1 = max(min(slab + [chosen]) - 1, 0), min(max(slab + [chosen]) + 2, hu.shape[2])
    pixel_mm = case.spacing_mm[:2]
    truth_area = measure_slice(hu[:, :, k], truth[:, :, k], pixel_mm).mask_area_cm2
    out = {}
    for name, (model, flip) in models.items():
        start = time.perf_counter()
        mask = predict_mask(model, image, z_range=(z0, z1), flip=flip)
        seconds = time.perf_counter() - start
        raw = measure_slice(hu[:, :, k], mask[:, :, k], pixel_mm)
        refined = measure_slice(hu[:, :, k], refine_border(hu[:, :, k], mask[:, :, k]), pixel_mm)
        end_to_end = measure_slice(hu[:, :, chosen], refine_border(hu[:, :, chosen], mask[:, :, chosen]), pixel_mm)
        out[name] = {
            "dice_mid": round(dice(mask[:, :, k], truth[:, :, k]), 4),
            "dice_slab": round(dice(mask[:, :, slab[0]:slab[-1] + 1], truth[:, :, slab[0]:slab[-1] + 1]), 4),
            "sma_error_pct": round((raw.sma_cm2 - truth_area) / truth_area * 100, 2),
            "sma_refined_error_pct": round((refined.sma_cm2 - truth_area) / truth_area * 100, 2),
            "e2e_sma_error_pct": round((end_to_end.sma_cm2 - truth_area) / truth_area * 100, 2),
            "mask_mean_hu": round(float(hu[:, :, k][mask[:, :, k] > 0].mean()), 1) if mask[:, :, k].any() else None,
            "sma_mean_hu": raw.muscle_mean_hu and round(raw.muscle_mean_hu, 1),
            "refined_mean_hu": refined.muscle_mean_hu and round(refined.muscle_mean_hu, 1),
            "slab_seconds": round(seconds, 2), "slab_slices": z1 - z0,
        }
    return out


def evaluate_case(case, locator, models) -> dict:
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    hu, truth = to_stored(case.hu), to_stored(case.muscle)
    image = MetaTensor(torch.from_numpy(hu[None].astype(np.float32)), affine=torch.as_tensor(affine))
    location = locate_l3(locator, image)
    row = {"case": case.case_id, "variation": case.variation.mode, "coverage": case.acquisition.coverage,
           "slice_mm": case.spacing_mm[2], "kernel": case.acquisition.kernel, **location_row(case, location)}
    if case.l3_mid_index is None:
        return row
    k = case.l3_mid_index
    truth_area = measure_slice(hu[:, :, k], truth[:, :, k], case.spacing_mm[:2])
    row.update({"truth_area_cm2": round(truth_area.mask_area_cm2, 2), "truth_sma_mean_hu": round(truth_area.muscle_mean_hu, 1),
                "truth_mean_hu": round(float(hu[:, :, k][truth[:, :, k] > 0].mean()), 1),
                "truth_protocol_bias_pct": round((truth_area.sma_cm2 - truth_area.mask_area_cm2) / truth_area.mask_area_cm2 * 100, 2),
                "metal_suspected": metal_suspected(hu[:, :, k], case.spacing_mm[:2]),
                "models": model_rows(case, image, hu, truth, location, models)})
    return row


def percentile(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarise(rows, names) -> dict:
    with_l3 = [r for r in rows if r["truth_has_l3"]]
    found = [r for r in with_l3 if r["has_l3"]]
    errors = [r["error_mm"] for r in found]
    # what a perfect mask scores as "SMA error against the truth area" under the HU protocol
    perfect_mask = np.abs([r["truth_protocol_bias_pct"] for r in with_l3])
    out = {"draws": len(rows), "with_l3": len(with_l3),
           "false_no_l3": sum(not r["has_l3"] for r in with_l3),
           "outside_l3": sum(not r["inside_l3"] for r in found),
           "without_l3": len(rows) - len(with_l3),
           "without_l3_reported": sum(not r["has_l3"] for r in rows if not r["truth_has_l3"]),
           "l3_error_mm_median": round(float(np.median(errors)), 2) if errors else None,
           "l3_error_mm_max": round(float(np.max(errors)), 2) if errors else None,
           "truth_protocol_bias_pct_median": round(float(np.median([r["truth_protocol_bias_pct"] for r in with_l3])), 2)
           if with_l3 else None,
           "perfect_mask_sma_error_pct_median": round(percentile(perfect_mask, 50), 2) if with_l3 else None,
           "perfect_mask_sma_error_pct_p95": round(percentile(perfect_mask, 95), 2) if with_l3 else None,
           "truth_sma_mean_hu_median": round(float(np.median([r["truth_sma_mean_hu"] for r in with_l3])), 1)
           if with_l3 else None,
           "metal_suspected": sum(bool(r.get("metal_suspected")) for r in with_l3), "models": {}}
    for name in names:
        m = [r["models"][name] for r in with_l3]
        if not m:
            continue
        d = [x["dice_mid"] for x in m]
        entry = {"dice_mid_median": round(float(np.median(d)), 4), "dice_mid_p5": round(percentile(d, 5), 4),
                 "dice_mid_min": round(float(np.min(d)), 4),
                 "dice_slab_median": round(float(np.median([x["dice_slab"] for x in m])), 4)}
        clear = [x["dice_mid"] for r, x in zip(with_l3, m) if not r.get("metal_suspected")]
        if clear and len(clear) < len(d):  # the scans the metal warning does not flag
            entry["dice_mid_median_clear_of_metal"] = round(float(np.median(clear)), 4)
            entry["dice_mid_p5_clear_of_metal"] = round(percentile(clear, 5), 4)
        for r, x in zip(with_l3, m):  # against the truth mask under the same -29..150 HU protocol
            bias = 1 + r["truth_protocol_bias_pct"] / 100
            x["sma_protocol_error_pct"] = round(((1 + x["sma_error_pct"] / 100) / bias - 1) * 100, 2)
        for key in ("sma_error_pct", "sma_refined_error_pct", "e2e_sma_error_pct", "sma_protocol_error_pct"):
            e = np.abs([x[key] for x in m])
            entry[key] = {"median": round(float(np.median(e)), 2), "p95": round(percentile(e, 95), 2),
                          "worst": round(float(e.max()), 2), "mean_signed": round(float(np.mean([x[key] for x in m])), 2)}
        for key in ("mask_mean_hu", "sma_mean_hu", "refined_mean_hu"):
            v = [x[key] for x in m if x[key] is not None]
            entry[key + "_median"] = round(float(np.median(v)), 1) if v else None
        entry["slab_seconds_median"] = round(float(np.median([x["slab_seconds"] for x in m])), 2)
        entry["slab_seconds_max"] = round(float(np.max([x["slab_seconds"] for x in m])), 2)
        out["models"][name] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=[str(REPO / "model" / "muscle_seg.pt")])
    parser.add_argument("--flip", action="store_true", help="also score each model with test-time flips")
    parser.add_argument("--locate-only", action="store_true", help="the locator's figures only, no muscle model")
    parser.add_argument("--locator", nargs="+", default=[str(REPO / "model" / "l3_locator.pt")],
                        help="one or more locators, each scored on the same draws")
    parser.add_argument("--splits", nargs="+", default=["standard:2000:20", "wide:2100:20", "wide:2200:20",
                                                        "stress:2300:20"])
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--out", help="JSON file for the rows and the summary (rewritten after every case)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="only summarise the rows of earlier --out files")
    args = parser.parse_args()
    if args.merge:
        runs = [json.loads(Path(p).read_text()) for p in args.merge]
        rows = [r for run in runs for r in run["rows"]]
        names = sorted({n for r in rows for n in r.get("models", {})})
        splits = list(dict.fromkeys(r["split"] for r in rows))
        print(markdown(report(rows, names, splits, " + ".join(run["command"] for run in runs), args.out)))
        return
    torch.set_num_threads(args.threads)
    models = {}
    for path in [] if args.locate_only else args.models:
        model = load_model(path)
        models[Path(path).name] = (model, False)
        if args.flip:
            models[Path(path).name + "+flip"] = (model, True)
    locators = {path: load_locator(path) for path in args.locator}
    rows = []
    for split in args.splits:
        variation, seed, count = split.split(":")
        for index in range(int(count)):
            case = generate_case(int(seed), index, matrix=args.matrix, variation=variation)
            for path, locator in locators.items():
                rows.append({"split": split, "locator": path, **evaluate_case(case, locator, models)})
                print(json.dumps(rows[-1]), flush=True)
            if len(locators) == 1:
                summary = report(rows, models, args.splits, " ".join(sys.argv), args.out)
            else:  # one summary per locator, on the same draws
                summary = {path: report([r for r in rows if r["locator"] == path], models, args.splits, "", None)
                           for path in locators}
                if args.out:
                    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "summary": summary,
                                                          "rows": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


def markdown(summary: dict) -> str:
    """The tables of docs/segmentation.md, from the summary."""
    lines = ["| split | draws | with L3 | false \"no L3\" | outside L3 | L3 error median / max mm "
             "| without L3 reported | a perfect mask's SMA vs truth area: median / 95th pct | metal on the slice |",
             "|---|---|---|---|---|---|---|---|---|"]
    for split, s in summary.items():
        lines.append(f"| {split} | {s['draws']} | {s['with_l3']} | {s['false_no_l3']} | {s['outside_l3']} "
                     f"| {s['l3_error_mm_median']} / {s['l3_error_mm_max']} | {s['without_l3_reported']}/{s['without_l3']} "
                     f"| {s.get('perfect_mask_sma_error_pct_median')} / {s.get('perfect_mask_sma_error_pct_p95')} % "
                     f"| {s.get('metal_suspected')} |")
    lines += ["", "| split | model | Dice mid-L3 median / 5th pct / min | SMA vs truth area: median / 95th pct / worst "
                  "(mean signed) | SMA vs truth mask at -29..150 HU: median / 95th pct / worst | border-refined SMA vs "
                  "truth area: median / 95th pct | mean HU: mask / -29..150 HU / refined / truth | slab s median |",
              "|---|---|---|---|---|---|---|---|"]
    for split, s in summary.items():
        for name, m in s["models"].items():
            e, p, r = m["sma_error_pct"], m["sma_protocol_error_pct"], m["sma_refined_error_pct"]
            lines.append(f"| {split} | {name} | {m['dice_mid_median']:.3f} / {m['dice_mid_p5']:.3f} / {m['dice_mid_min']:.3f} "
                         f"| {e['median']:.1f} / {e['p95']:.1f} / {e['worst']:.1f} % ({e['mean_signed']:+.1f} %) "
                         f"| {p['median']:.1f} / {p['p95']:.1f} / {p['worst']:.1f} % | {r['median']:.1f} / {r['p95']:.1f} % "
                         f"| {m['mask_mean_hu_median']} / {m['sma_mean_hu_median']} / {m['refined_mean_hu_median']} / "
                         f"{s.get('truth_sma_mean_hu_median')} | {m['slab_seconds_median']} |")
    return "\n".join(lines)


def report(rows, names, splits, command: str, out) -> dict:
    summary = {"all": summarise(rows, names)}
    for split in splits:
        summary[split] = summarise([r for r in rows if r["split"] == split], names)
    summary["held_out_not_stress"] = summarise([r for r in rows if r["variation"] != "stress"], names)
    summary["stress"] = summarise([r for r in rows if r["variation"] == "stress"], names)
    if out:
        Path(out).write_text(json.dumps({"command": command, "summary": summary, "rows": rows}, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
