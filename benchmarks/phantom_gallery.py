"""Pictures of the synthetic CT phantom for docs/: axial T12, L3, L5 and a sagittal view per case,
with the skeletal-muscle truth outlined on the L3 slice.

    python benchmarks/phantom_gallery.py --seeds 2026:0 2026:1 2026:4 2026:5 --out docs/phantom_gallery.png
    python benchmarks/phantom_gallery.py --variation stress --seeds 31:1 31:5 31:6 --out docs/phantom_stress.png
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sarcopenia_app.phantom import generate_case  # noqa: E402

WINDOW_HU = (-160, 240)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="+", default=["2026:0", "2026:1", "2026:4", "2026:5"], help="SEED:INDEX")
    parser.add_argument("--out", default="docs/phantom_gallery.png")
    parser.add_argument("--variation", default="standard", help="standard, wide or stress (docs/phantom.md)")
    args = parser.parse_args()
    fig, axes = plt.subplots(len(args.seeds), 4, figsize=(16, 4.2 * len(args.seeds)))
    for row, spec in zip(np.atleast_2d(axes), args.seeds):
        seed, index = (int(v) for v in spec.split(":"))
        case = generate_case(seed, index, acquisition_overrides={"coverage": "abdomen_pelvis"},
                             variation=args.variation)
        p, a = case.patient, case.acquisition
        for ax, level in zip(row[:3], ("T12", "L3", "L5")):
            ks = case.level_slices(level)
            ax.axis("off")
            if not ks:
                continue
            k = case.l3_mid_index if level == "L3" else ks[len(ks) // 2]
            ax.imshow(case.hu[:, :, k].T, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1])
            title = f"{case.case_id} {level} (slice {k})"
            if level == "L3":
                ax.contour(case.muscle[:, :, k].T, [0.5], colors="red", linewidths=0.6)
                title += f"\nSMA {case.sma_cm2(k):.1f} cm², muscle truth in red"
            ax.set_title(title, fontsize=9)
        mid = case.hu.shape[0] // 2
        aspect = case.spacing_mm[2] / case.spacing_mm[1]
        row[3].imshow(case.hu[mid, :, ::-1].T, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=aspect)
        if case.l3_mid_index is not None:
            row[3].axhline(case.hu.shape[2] - 1 - case.l3_mid_index, color="yellow", lw=0.7)
        row[3].set_title(f"sagittal; {p.sex} {p.height_m:.2f} m BMI {p.bmi:.1f}, {a.contrast_phase},\n"
                         f"{case.spacing_mm[0]:.2f} x {case.spacing_mm[2]:g} mm, arms {p.arms}; L3 in yellow",
                         fontsize=9)
        row[3].axis("off")
    plt.tight_layout()
    plt.savefig(args.out, dpi=70)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
