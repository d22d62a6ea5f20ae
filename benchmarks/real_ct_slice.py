"""What the models do on real CT: pydicom-data's contrast-enhanced abdominal slice (kidney level,
stored upside down: ImageOrientationPatient 1,0,0,0,-1,0).

    python benchmarks/real_ct_slice.py --out docs/real_ct_slice.png

Read through the project's DICOM reader (so the flipped orientation is handled the way every
DICOM input is), segmented by the network and the classical baseline; the picture is shown in
radiological convention (anterior up, patient's right on the left).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.data import MetaTensor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.baseline import segment_muscle_volume  # noqa: E402
from sarcopenia_app.dicom_io import read_series  # noqa: E402
from sarcopenia_app.segment import load_model, predict_mask  # noqa: E402


def real_slice_path() -> Path:
    import pydicom

    site = Path(pydicom.__file__).resolve().parents[1]
    path = site / "data_store" / "data" / "explicit_VR-UN.dcm"
    if not path.exists():
        raise SystemExit(f"{path} not found: install the pydicom-data package")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--out", default=str(REPO / "docs" / "real_ct_slice.png"))
    args = parser.parse_args()
    volume = read_series(real_slice_path())
    image = MetaTensor(torch.from_numpy(volume.hu[None]), affine=torch.from_numpy(volume.affine_ras))
    net = predict_mask(load_model(args.model), image)
    zooms = nib.affines.voxel_sizes(volume.affine_ras)
    base = segment_muscle_volume(volume.hu, list(zooms))
    ornt = nib.orientations.io_orientation(volume.affine_ras)

    def display(a: np.ndarray) -> np.ndarray:
        """RAS array -> rows from anterior to posterior, columns from patient right to left."""
        ras = nib.orientations.apply_orientation(a, ornt)[:, :, 0]
        return ras[::-1, ::-1].T

    hu = display(volume.hu)
    area_cm2 = float(zooms[0] * zooms[1] / 100.0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for ax, (title, mask) in zip(axes, (("CT (window -160..240 HU)", None), ("muscle_seg network", net),
                                        ("muscle_threshold baseline", base))):
        ax.imshow(hu, cmap="gray", vmin=-160, vmax=240)
        if mask is not None:
            m = display(mask)
            ax.contour(m, [0.5], colors="red", linewidths=0.7)
            title += f": {m.sum() * area_cm2:.1f} cm²"
        ax.set_title(title)
        ax.axis("off")
    plt.tight_layout()
    plt.savefig(args.out, dpi=80)
    print(f"network {net.sum() * area_cm2:.1f} cm², baseline {base.sum() * area_cm2:.1f} cm²; wrote {args.out}")


if __name__ == "__main__":
    main()
