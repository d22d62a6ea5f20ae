"""Write phantom cases to disk: NIfTI or a DICOM CT series, datastore labels, ground truth.

Output is byte-for-byte reproducible: gzip headers carry no time stamp, DICOM UIDs are derived
from the seed, and the JSON is written with sorted keys.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import nibabel as nib
import numpy as np

from .generate import PhantomCase, generate_case
from .labels import Anatomy, TRUNK_MUSCLES
from .patient import describe
from .spine import LEVEL_NAMES, vertebra_label

LABEL_SLICE_MODES = ("all", "l3", "none")
FORMATS = ("nifti", "dicom")
L3_LABEL_HALF_RANGE_MM = 8.0
L3_LABEL_MAX_SLICES = 5
TRUTH_LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5")  # per-level truth in the sidecar
VOLUME_SPAN = (("T12", "L1"), ("L5", "S1"))  # muscle volume from the T12/L1 to the L5/S1 mid-point


def stored_layout(case: PhantomCase, orientation: str) -> Tuple[np.ndarray, callable]:
    """RAS+ affine of the stored array and a function that brings canonical arrays into it.

    Canonical arrays run x -> left, y -> posterior ("LPS"); "RAS" storage flips the first two axes.
    """
    sx, sy, sz = case.spacing_mm
    x0, y0, z0 = case.origin_lps_mm
    nx, ny = case.hu.shape[:2]
    if orientation == "LPS":
        affine = np.diag([-sx, -sy, sz, 1.0])
        affine[:3, 3] = [-x0, -y0, z0]
        return affine, lambda a: a
    if orientation == "RAS":
        affine = np.diag([sx, sy, sz, 1.0])
        affine[:3, 3] = [-(x0 + (nx - 1) * sx), -(y0 + (ny - 1) * sy), z0]
        return affine, lambda a: np.ascontiguousarray(a[::-1, ::-1, :])
    raise ValueError(f"orientation must be RAS or LPS, not {orientation!r}")


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def l3_label_slices(case: PhantomCase) -> List[int]:
    """The few slices an annotator would outline: around mid-L3, inside the L3 body."""
    mid = case.l3_mid_index
    if mid is None:
        return []
    z = case.z_anatomical_mm
    near = [k for k in case.level_slices("L3") if abs(z[k] - z[mid]) <= L3_LABEL_HALF_RANGE_MM]
    near.sort(key=lambda k: abs(k - mid))
    return sorted(near[:L3_LABEL_MAX_SLICES])


def level_truth(case: PhantomCase) -> Dict[str, Any]:
    """Mid slice and muscle area of every level whose middle is scanned, and the muscle volume
    between the mid-points T12/L1 and L5/S1 (None unless both are scanned)."""
    muscle, z = case.muscle, case.z_anatomical_mm
    levels = {}
    for name in TRUTH_LEVELS:
        k = case.level_mid_index(name)
        if k is not None:
            levels[name] = {"mid_index": k, "sma_cm2": round(case.sma_cm2(k), 4)}
    upper, lower = (0.5 * (case.spine.by_name[a].z_mid + case.spine.by_name[b].z_mid) for a, b in VOLUME_SPAN)
    half = case.spacing_mm[2] / 2
    volume = None
    if z[0] - half <= lower and upper <= z[-1] + half:  # z runs upwards: T12/L1 is the upper end
        inside = (z >= lower) & (z <= upper)
        volume = round(float(muscle[:, :, inside].sum() * np.prod(case.spacing_mm) / 1000.0), 2)
    return {"levels": levels, "muscle_volume_l1_l5_cm3": volume}


def truth_record(case: PhantomCase, orientation: str) -> Dict[str, Any]:
    mid = case.l3_mid_index
    muscle = case.muscle
    record: Dict[str, Any] = {
        "id": case.case_id,
        "seed": case.seed,
        "index": case.index,
        "has_l3": mid is not None,
        "l3_mid_index": mid,
        "l3_index_range": [min(case.level_slices("L3")), max(case.level_slices("L3"))] if mid is not None else None,
        "l3_mid_z_mm": round(case.origin_lps_mm[2] + mid * case.spacing_mm[2], 3) if mid is not None else None,
        "sma_cm2": round(case.sma_cm2(mid), 4) if mid is not None else None,
        "muscle_mean_hu": round(float(case.hu[:, :, mid][muscle[:, :, mid] > 0].mean()), 2) if mid is not None else None,
        "sex": case.patient.sex,
        "age_years": case.patient.age_years,
        "height_m": case.patient.height_m,
        "weight_kg": case.patient.weight_kg,
        "bmi": round(case.patient.bmi, 2),
        "spacing_mm": [round(v, 4) for v in case.spacing_mm],
        "slice_thickness_mm": case.acquisition.slice_thickness_mm,
        "shape": list(case.hu.shape),
        "orientation": orientation,
        "coverage": case.acquisition.coverage,
        "contrast_phase": case.acquisition.contrast_phase,
        "arms": case.patient.arms,
        "vertebra_index_ranges": {lv: [min(ks), max(ks)] for lv in LEVEL_NAMES if (ks := case.level_slices(lv))},
        "index_axis": "third axis of the stored array; 0 = most inferior slice",
        "anatomy_labels": {a.name.lower(): int(a) for a in Anatomy if a != Anatomy.VERTEBRA_BASE}
        | {f"vertebra_{lv}": vertebra_label(lv) for lv in LEVEL_NAMES},
        "muscle_labels": [a.name.lower() for a in TRUNK_MUSCLES],
        "draws": describe(case.patient, case.acquisition) | case.variation.describe(),
        **level_truth(case),
    }
    return record


def write_case(case: PhantomCase, out_dir: Path, fmt: str, label_slices: str, with_label: bool) -> Dict[str, Any]:
    """Image, optional datastore label, ground truth and sidecar for one case."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    if label_slices not in LABEL_SLICE_MODES:
        raise ValueError(f"label_slices must be one of {LABEL_SLICE_MODES}")
    orientation = case.acquisition.orientation if fmt == "nifti" else "LPS"
    affine, to_stored = stored_layout(case, orientation)
    record = truth_record(case, orientation)
    files: Dict[str, str] = {}
    if fmt == "nifti":
        write_nifti(out_dir / f"{case.case_id}.nii.gz", to_stored(case.hu), affine)
        files["image"] = f"{case.case_id}.nii.gz"
    else:
        from .dicom import write_series

        uids = write_series(case, out_dir / case.case_id)
        files["image"] = f"{case.case_id}/"
        if record["has_l3"]:
            record["l3_sop_instance_uid"] = uids[record["l3_mid_index"]]
    muscle = case.muscle
    write_nifti(out_dir / "truth" / f"{case.case_id}_muscle.nii.gz", to_stored(muscle), affine)
    write_nifti(out_dir / "truth" / f"{case.case_id}_anatomy.nii.gz", to_stored(case.anatomy), affine)
    files["muscle"] = f"truth/{case.case_id}_muscle.nii.gz"
    files["anatomy"] = f"truth/{case.case_id}_anatomy.nii.gz"
    slices: Optional[List[int]] = None
    if with_label and label_slices == "all":
        slices = list(range(muscle.shape[2]))
    elif with_label and label_slices == "l3":
        slices = l3_label_slices(case) or None
    if slices:
        label = np.zeros_like(muscle)
        label[:, :, slices] = muscle[:, :, slices]
        write_nifti(out_dir / "labels" / "final" / f"{case.case_id}.nii.gz", to_stored(label), affine)
        files["label"] = f"labels/final/{case.case_id}.nii.gz"
    record["labelled_slices"] = slices or []
    record["format"] = fmt
    record["files"] = files
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    (out_dir / "truth" / f"{case.case_id}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def write_dataset(out_dir: Path, count: int, seed: int, fmt: str = "nifti", label_slices: str = "all",
                  labelled: Optional[int] = None, matrix: int = 512, max_slices: int = 160,
                  variation: str = "standard") -> List[Dict[str, Any]]:
    """Generate `count` cases from `seed` into a MONAI Label style folder, with datastore labels
    for the first `labelled` cases that can have one (all when None; with "l3" labels a case
    without L3 gets none and does not count)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: List[Dict[str, Any]] = []
    for index in range(count):
        case = generate_case(seed, index, matrix=matrix, max_slices=max_slices, variation=variation)
        done = sum("label" in r["files"] for r in records)
        with_label = labelled is None or done < labelled
        records.append(write_case(case, out_dir, fmt, label_slices, with_label))
    return records
