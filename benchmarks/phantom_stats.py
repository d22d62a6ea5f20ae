"""Speed of the phantom generator and the spread of the population it draws.

    python benchmarks/phantom_stats.py --seed 2026 --count 24

Prints the time to generate a 512x512x100 volume (thin and thick slices, one process) and a table
of per-case draws: coverage, spacing, L3 presence, SMA, SMI and muscle HU at mid-L3.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sarcopenia_app.phantom import generate_case


def time_volume(thickness_mm: float, coverage: str) -> float:
    start = time.perf_counter()
    case = generate_case(99, 0, max_slices=100, acquisition_overrides={
        "slice_spacing_mm": thickness_mm, "slice_thickness_mm": thickness_mm, "coverage": coverage})
    elapsed = time.perf_counter() - start
    assert case.hu.shape == (512, 512, 100), case.hu.shape
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--matrix", type=int, default=256, help="matrix for the population table (speed)")
    args = parser.parse_args()
    print("## Generation time, 512x512x100, one process")
    for thickness, coverage in ((1.25, "abdomen_pelvis"), (2.5, "abdomen_pelvis"), (5.0, "chest_abdomen_pelvis")):
        print(f"- {thickness} mm slices: {time_volume(thickness, coverage):.1f} s")
    print(f"\n## Population, seed {args.seed}, {args.count} cases (matrix {args.matrix})")
    print("| case | sex | BMI | coverage | spacing mm | slices | L3 | SMA cm² | SMI cm²/m² | muscle HU | phase | arms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    smi, has_l3 = [], 0
    for index in range(args.count):
        case = generate_case(args.seed, index, matrix=args.matrix)
        p, a = case.patient, case.acquisition
        k = case.l3_mid_index
        sma = case.sma_cm2(k) if k is not None else None
        if k is not None:
            has_l3 += 1
            smi.append((p.sex, sma / p.height_m ** 2))
            hu = case.hu[:, :, k][case.muscle[:, :, k] > 0].mean()
        print(f"| {case.case_id} | {p.sex} | {p.bmi:.1f} | {a.coverage} | {case.spacing_mm[0]:.2f}x{case.spacing_mm[2]:g} "
              f"| {case.hu.shape[2]} | {'yes' if k is not None else 'no'} | {sma:.1f} | {sma / p.height_m ** 2:.1f} "
              f"| {hu:.0f} | {a.contrast_phase} | {p.arms} |" if k is not None else
              f"| {case.case_id} | {p.sex} | {p.bmi:.1f} | {a.coverage} | {case.spacing_mm[0]:.2f}x{case.spacing_mm[2]:g} "
              f"| {case.hu.shape[2]} | no | - | - | - | {a.contrast_phase} | {p.arms} |")
    for sex in ("M", "F"):
        values = np.array([v for s, v in smi if s == sex])
        if values.size:
            print(f"\nSMI {sex}: median {np.median(values):.1f}, range {values.min():.1f}..{values.max():.1f} cm²/m² "
                  f"(n={values.size})")
    print(f"cases with L3: {has_l3}/{args.count}")


if __name__ == "__main__":
    main()
