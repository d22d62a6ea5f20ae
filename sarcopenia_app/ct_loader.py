"""Read a CT from what users have: a NIfTI/NRRD file, a DICOM series folder, or one DICOM file.

Returns the HU volume as a (1, X, Y, Z) MetaTensor with its RAS affine (the layout every model in
the project takes) and what the DICOM header says about the patient and the acquisition, so that
height, weight, sex and contrast need not be typed in when the scanner recorded them.

This is the one reader of the project: `sarcopenia measure`, and the server's inference, training
and scoring (through `transforms.LoadCTd`) all read CT here, so one file gives one set of numbers.
A volume converted from a DICOM series that still lies beside it (MONAI Label's DICOMweb cache
keeps `<series>/` next to `<series>.nii.gz`) keeps the series' header facts and slice UIDs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import LoadImage

from .ct_input import InvalidCTError, check_ct_array, check_voxel_count
from .dicom_io import DicomVolume, dicom_files, is_dicom_file, read_series, read_series_header

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
    if path.is_file() and not is_volume_file(path) and not is_dicom_file(path):
        raise InvalidCTError(f"{path.name} is neither a CT volume (NIfTI, NRRD) nor a DICOM file: "
                             "send the CT itself, not a picture or a report")
    loaded = _load_volume_file(path) if is_volume_file(path) else _load_dicom(path)
    check_ct_array(np.asarray(loaded.image[0]), loaded.spacing_mm.tolist())
    return loaded


def _nifti_header(path: Union[str, Path]):
    """A NIfTI file's header, read without the voxels (None for other formats, or when it cannot
    be read: the full read then reports the damage)."""
    if not str(path).lower().endswith((".nii", ".nii.gz")):
        return None
    try:
        import nibabel as nib
        from nibabel.openers import ImageOpener

        with ImageOpener(str(path)) as f:  # check=False: as written, not as nibabel would repair it
            return nib.Nifti1Header.from_fileobj(f, check=False)
    except Exception:  # noqa: BLE001 - the full read that follows says what is wrong
        return None


def header_shape(path: Union[str, Path]) -> Optional[tuple]:
    """The array shape a NIfTI header announces (None for other formats)."""
    header = _nifti_header(path)
    return None if header is None else tuple(header.get_data_shape())


def check_nifti_geometry(header) -> None:
    """Readers quietly repair a broken geometry (nibabel turns a zero spacing into 1 mm, and a
    singular sform into a guess), which would make every area wrong: refuse it from the header."""
    zooms = np.asarray(header["pixdim"][1:4], float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise InvalidCTError(f"voxel spacing {zooms.tolist()} mm in the NIfTI header is not valid: the header's "
                             "affine is broken; convert the DICOM series again")
    for code, matrix in (("sform_code", header.get_sform()), ("qform_code", header.get_qform())):
        if int(header[code]) > 0:
            linear = np.asarray(matrix, float)[:3, :3]
            if not np.all(np.isfinite(linear)) or abs(np.linalg.det(linear)) < 1e-6:
                raise InvalidCTError(f"the NIfTI header's {code.split('_')[0]} has no valid voxel spacing "
                                     f"(singular affine): the header's affine is broken; convert the DICOM series again")


def check_before_reading(path: Union[str, Path]) -> None:
    """InvalidCTError for an empty file, or a NIfTI header that announces more voxels than
    ct_input allows or a broken geometry, before any voxel is read (a gzip bomb or a whole-body
    scan is refused before it fills the memory)."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InvalidCTError(f"{Path(path).name} is empty (0 bytes): the upload or copy did not finish; send it again")
    header = _nifti_header(path)
    if header is not None:
        check_voxel_count(header.get_data_shape())
        check_nifti_geometry(header)


def _load_volume_file(path: Path) -> LoadedCT:
    check_before_reading(path)
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as error:  # a reader's stack trace means nothing to the user
        raise InvalidCTError(f"could not read {path.name} as a CT volume: {type(error).__name__}: "
                             f"{str(error)[:200]}") from error
    if image.ndim != 4 or image.shape[0] != 1:
        raise InvalidCTError(f"{path.name}: expected one 3D CT volume, got an array of shape {tuple(image.shape)}")
    image = MetaTensor(image.float(), affine=image.affine)
    original = dicom_series_beside(path)
    if original is not None:
        first, sop_instance_uids = read_series_header(original)
        if len(sop_instance_uids) == image.shape[-1]:
            return LoadedCT(image, header_info(first), sop_instance_uids)
    return LoadedCT(image, HeaderInfo(slice_thickness_mm=float(affine_to_spacing(image.affine, r=3)[2])))


def dicom_series_beside(path: Path) -> Optional[Path]:
    """The DICOM series a volume file was converted from, when it lies beside it under the
    volume's own name (`<id>/` next to `<id>.nii.gz`); None otherwise."""
    name = path.name
    stem = next((name[: -len(suffix)] for suffix in VOLUME_SUFFIXES if name.lower().endswith(suffix)), name)
    folder = path.parent / stem
    try:
        return folder if folder.is_dir() and dicom_files(folder) and is_dicom_file(dicom_files(folder)[0]) else None
    except OSError:
        return None


def _load_dicom(path: Path) -> LoadedCT:
    if path.is_dir() and not dicom_files(path):
        raise InvalidCTError(f"{path} is an empty folder")
    volume: DicomVolume = read_series(path)
    image = MetaTensor(torch.from_numpy(volume.hu)[None], affine=torch.from_numpy(volume.affine_ras))
    return LoadedCT(image, header_info(volume.first), volume.sop_instance_uids)


def header_info(ds: pydicom.Dataset) -> HeaderInfo:
    """Patient and acquisition facts from one slice's header (pydicom Dataset)."""
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
