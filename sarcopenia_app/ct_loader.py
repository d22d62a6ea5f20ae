"""Read a CT from what users have: a NIfTI/NRRD file, a DICOM series folder, or one DICOM file.

Returns the HU volume as a (1, X, Y, Z) MetaTensor with its RAS affine (the layout every model in
the project takes) and what the DICOM header says about the patient and the acquisition, so that
height, weight, sex and contrast need not be typed in when the scanner recorded them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import LoadImage

from .ct_input import InvalidCTError, check_ct_array
from .dicom_io import DicomVolume, dicom_files, read_series

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


@dataclass
class HeaderInfo:
    """What the file says about the patient and the scan (None where it says nothing)."""

    sex: Optional[str] = None
    height_m: Optional[float] = None
    weight_kg: Optional[float] = None
    contrast_agent: Optional[str] = None
    slice_thickness_mm: Optional[float] = None


@dataclass
class LoadedCT:
    image: MetaTensor  # (1, X, Y, Z) HU, RAS affine
    header: HeaderInfo = field(default_factory=HeaderInfo)
    sop_instance_uids: Optional[List[str]] = None  # DICOM: one per slice along the stored third axis

    @property
    def spacing_mm(self) -> np.ndarray:
        return affine_to_spacing(self.image.affine, r=3).numpy()


def is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES)


def load_ct(path: Union[str, Path]) -> LoadedCT:
    """Any of the supported inputs, checked (see ct_input); InvalidCTError says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise InvalidCTError(f"{path} does not exist")
    loaded = _load_volume_file(path) if is_volume_file(path) else _load_dicom(path)
    check_ct_array(np.asarray(loaded.image[0]), loaded.spacing_mm.tolist())
    return loaded


def _load_volume_file(path: Path) -> LoadedCT:
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as error:  # a reader's stack trace means nothing to the user
        raise InvalidCTError(f"could not read {path.name} as a CT volume: {type(error).__name__}: "
                             f"{str(error)[:200]}") from error
    if image.ndim != 4 or image.shape[0] != 1:
        raise InvalidCTError(f"{path.name}: expected one 3D CT volume, got an array of shape {tuple(image.shape)}")
    thickness = float(affine_to_spacing(image.affine, r=3)[2])
    return LoadedCT(MetaTensor(image.float(), affine=image.affine), HeaderInfo(slice_thickness_mm=thickness))


def _load_dicom(path: Path) -> LoadedCT:
    if path.is_dir() and not dicom_files(path):
        raise InvalidCTError(f"{path} is an empty folder")
    volume: DicomVolume = read_series(path)
    image = MetaTensor(torch.from_numpy(volume.hu)[None], affine=torch.from_numpy(volume.affine_ras))
    return LoadedCT(image, header_info(volume), volume.sop_instance_uids)


def header_info(volume: DicomVolume) -> HeaderInfo:
    ds = volume.first
    sex = str(ds.get("PatientSex", "") or "").upper()
    height = _positive(ds.get("PatientSize"))
    if height is not None and height > 3:  # some sites store centimetres
        height /= 100.0
    agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
    return HeaderInfo(sex=sex if sex in ("M", "F") else None, height_m=height,
                      weight_kg=_positive(ds.get("PatientWeight")), contrast_agent=agent or None,
                      slice_thickness_mm=_positive(ds.get("SliceThickness")))


def _positive(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None
