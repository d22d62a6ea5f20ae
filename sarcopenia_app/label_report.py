"""The SR for a label an annotator saved: the corrected mask measured at the L3 slice of the
scan's last measurement, so the PACS report says what the stored SEG shows, not the model's
first proposal.

The L3 slice, the cut-off set, the HU range and the patient values come from that earlier record
(analysis.analyse_ct, kept in the datastore's image info); the slice is found again by its world
z, so the record may come from a converted copy of the series (the server's NIfTI cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import pydicom
from monai.data.utils import affine_to_spacing
from monai.transforms import LoadImage, ResampleToMatch
from pydicom.dataset import Dataset

from .analysis import Subject, measure_slices, rate
from .ct_loader import load_ct
from .cutoffs import cutoff_set
from .dicom_io import dicom_files
from .dicom_results import measurement_report
from .measurements import MUSCLE_HU

MAX_Z_MISMATCH_MM = 0.5


def label_on_grid(label_path: Union[str, Path], image) -> np.ndarray:
    """The label resampled (nearest neighbour) onto the (1, X, Y, Z) image's grid, as (X, Y, Z) uint8."""
    label = LoadImage(image_only=True, ensure_channel_first=True)(str(label_path))
    return (ResampleToMatch(mode="nearest")(label.float(), img_dst=image)[0].numpy() > 0.5).astype(np.uint8)


def report_for_label(series_dir: Union[str, Path], label_path: Union[str, Path], record: Dict[str, Any],
                     seg: Dataset) -> Dataset:
    """TID 1500 SR of the saved label (stored as `seg`) on the DICOM series in `series_dir`.
    ValueError when the record has no L3 or its slice is not in this series."""
    if record.get("l3_z_mm") is None or record.get("l3_slice_index") is None:
        raise ValueError("the scan has no L3 measurement to report (no L3 found, or never measured)")
    loaded = load_ct(series_dir)
    affine = np.asarray(loaded.image.affine, float)
    z_mm = affine[2, 2] * np.arange(loaded.image.shape[-1]) + affine[2, 3]  # DICOM: slices along the third axis
    k = int(np.argmin(np.abs(z_mm - record["l3_z_mm"])))
    if abs(z_mm[k] - record["l3_z_mm"]) > MAX_Z_MISMATCH_MM:
        raise ValueError(f"no slice of this series lies at the measured L3 z = {record['l3_z_mm']} mm")
    offsets = [j - record["l3_slice_index"] for j in record.get("measured_slices") or [record["l3_slice_index"]]]
    slices = [k + o for o in offsets if 0 <= k + o < loaded.image.shape[-1]]
    spacing = affine_to_spacing(affine, r=3)
    measured = measure_slices(np.asarray(loaded.image[0]), label_on_grid(label_path, loaded.image), 2,
                              spacing[:2], slices, tuple(record.get("muscle_hu_range") or MUSCLE_HU))
    subject = Subject(record.get("sex"), record.get("height_m"), record.get("weight_kg"))
    rating, _ = rate(measured, subject, cutoff_set(record["cutoffs"]))
    uid = loaded.sop_instance_uids[k]
    l3_file = next(path for path in dicom_files(series_dir)
                   if pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == uid)
    updated = {**record, **rating, "l3_slice_index": k, "l3_sop_instance_uid": uid, "measured_slices": slices}
    return measurement_report(updated, pydicom.dcmread(l3_file), seg)
