"""Read one DICOM CT series into a HU volume with a RAS+ affine (what nibabel and MONAI use).

Slices are ordered by their position along the slice normal, not by file name or InstanceNumber
(scanners number head-first, sort orders differ); rescale slope/intercept are applied, so raw
stored values never reach the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import pydicom

from .ct_input import InvalidCTError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class DicomVolume:
    hu: np.ndarray  # (columns, rows, slices): x along the row direction, y along the column direction
    affine_ras: np.ndarray
    sop_instance_uids: List[str]
    first: pydicom.Dataset  # header of the first slice, for patient tags


def is_dicom_file(path: Path) -> bool:
    """Part 10 files start with a 128-byte preamble and 'DICM'."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def dicom_files(path: Union[str, Path]) -> List[Path]:
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [f for f in files if not f.name.startswith(".")]


def read_series(paths: Union[str, Path, Sequence[Path]]) -> DicomVolume:
    slices = _sorted_ct_slices(paths, with_pixels=True)
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for ds in slices])
    if len(slices) > 1:
        step = positions[1:] - positions[:-1]
        spacing_z = float(np.median(np.linalg.norm(step, axis=1)))
        if spacing_z <= 0:
            raise InvalidCTError("several slices share one position: duplicate or mixed series")
    else:
        spacing_z = float(slices[0].get("SliceThickness") or 1.0)
    row_dir, col_dir, normal = _directions(slices[0])
    row_spacing, col_spacing = (float(v) for v in slices[0].PixelSpacing)
    volume = np.stack([ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1))
                       + float(ds.get("RescaleIntercept", 0)) for ds in slices], axis=-1)
    hu = np.ascontiguousarray(volume.transpose(1, 0, 2))  # (rows, cols, z) -> (cols, rows, z)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing  # moving along a row = next column
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = normal * spacing_z
    affine_lps[:3, 3] = positions[0]
    return DicomVolume(hu, LPS_TO_RAS @ affine_lps, [str(ds.SOPInstanceUID) for ds in slices], slices[0])


def read_series_header(paths: Union[str, Path, Sequence[Path]]) -> Tuple[pydicom.Dataset, List[str]]:
    """The first slice's header and the SOP Instance UIDs in the order `read_series` stacks the
    slices, without reading any pixels (a converted volume's DICOM original, read for its tags)."""
    slices = _sorted_ct_slices(paths, with_pixels=False)
    return slices[0], [str(ds.SOPInstanceUID) for ds in slices]


def _sorted_ct_slices(paths: Union[str, Path, Sequence[Path]], with_pixels: bool) -> List[pydicom.Dataset]:
    """The CT image slices of one series, ordered along the slice normal; InvalidCTError otherwise."""
    files = dicom_files(paths) if isinstance(paths, (str, Path)) else list(paths)
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=not with_pixels)
        except Exception:  # not DICOM (a README, a thumbnail): ignore
            continue
        if "PixelData" in ds or (not with_pixels and "ImagePositionPatient" in ds):
            slices.append(ds)
    if not slices:
        raise InvalidCTError(f"no DICOM images found in {paths}")
    modalities = {str(ds.get("Modality", "")) for ds in slices}
    if modalities != {"CT"}:
        raise InvalidCTError(f"expected a CT series, found modality {sorted(modalities)}")
    series = {ds.get("SeriesInstanceUID") for ds in slices}
    if len(series) > 1:
        raise InvalidCTError(f"{len(series)} series in one input: give one series per folder")
    normal = _directions(slices[0])[2]
    return sorted(slices, key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))


def _directions(ds: pydicom.Dataset) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and slice normal (LPS) of one slice."""
    orientation = np.asarray(ds.ImageOrientationPatient, float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    return row_dir, col_dir, np.cross(row_dir, col_dir)
