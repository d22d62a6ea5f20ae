"""What muscle models mark on the real TotalSegmentator DICOM series (T11-T12, 20 slices), against
that peer model's own labels: how much of its paraspinal (autochthon) muscle each mask covers, and
how much of each mask lies in its spleen and liver. A look at real anatomy, not a reference to
tune to (../shared/data/real_ct/README.md).

    python benchmarks/real_ct_peer.py --models model/muscle_seg.pt model/training_state/muscle_deep.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.ct_loader import load_ct  # noqa: E402
from sarcopenia_app.segment import load_model, predict_mask  # noqa: E402

SERIES = REPO.parent / "shared" / "data" / "real_ct" / "totalsegmentator_dicom"
PEER_LABELS = {"spleen": (1,), "liver": (5,), "autochthon": (86, 87)}  # TotalSegmentator's numbering


def peer_labels_on(image_affine: np.ndarray, seg: nib.Nifti1Image) -> np.ndarray:
    """The peer's labels on the image's voxel grid (same grid, axes possibly flipped)."""
    labels = np.asarray(seg.dataobj)
    for axis in range(3):
        if np.sign(seg.affine[axis, axis]) != np.sign(image_affine[axis, axis]):
            labels = np.flip(labels, axis)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=[str(REPO / "model" / "muscle_seg.pt")])
    parser.add_argument("--series", type=Path, default=SERIES)
    args = parser.parse_args()
    loaded = load_ct(args.series / "example_ct_dicom")
    affine = np.asarray(loaded.image.affine, float)
    labels = peer_labels_on(affine, nib.load(str(args.series / "example_seg_dicom.nii.gz")))
    voxel_cm3 = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    autochthon = np.isin(labels, PEER_LABELS["autochthon"])
    for path in args.models:
        mask = predict_mask(load_model(path), loaded.image) > 0
        print(json.dumps({
            "model": path, "mask_cm3": round(float(mask.sum() * voxel_cm3), 1),
            "autochthon_covered": round(float((mask & autochthon).sum() / autochthon.sum()), 3),
            **{f"mask_in_{name}_cm3": round(float((mask & np.isin(labels, PEER_LABELS[name])).sum() * voxel_cm3), 1)
               for name in ("spleen", "liver")}}), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
