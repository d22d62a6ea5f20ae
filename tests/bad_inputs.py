"""The catalogue of bad inputs, written as files: one per way a user can get it wrong, with the
words the answer must contain. Shared by the REST tests and the CLI tests."""

import gzip
from pathlib import Path
from typing import Callable, Dict, NamedTuple

import nibabel as nib
import numpy as np
from PIL import Image

from sarcopenia_app.ct_input import MAX_VOXELS
from sarcopenia_app.phantom.generate import generate_case
from sarcopenia_app.phantom.writer import stored_layout, write_nifti
from synthetic_abdomen import abdomen_slice


class BadInput(NamedTuple):
    file_name: str
    write: Callable[[Path], None]
    reason: str  # the answer must contain one of the "|"-separated phrases


def _ct(slices: int = 4) -> np.ndarray:
    return np.repeat(abdomen_slice((0.8, 0.8)).hu[:, :, None], slices, axis=2).astype(np.float32)


def _nifti(array: np.ndarray, affine=np.diag([0.8, 0.8, 5.0, 1.0])) -> Callable[[Path], None]:
    return lambda path: nib.save(nib.Nifti1Image(array, affine), path)


def _with_header(sform: np.ndarray, pixdim_mm) -> Callable[[Path], None]:
    """A NIfTI whose header says what nibabel would refuse to write through an affine."""
    def write(path: Path) -> None:
        image = nib.Nifti1Image(_ct(), None)
        image.header.set_qform(None, code=0)
        image.header["pixdim"][1:4] = pixdim_mm
        image.header.set_sform(sform, code=1 if sform is not None else 0)
        nib.save(image, path)

    return write


def _truncated(path: Path) -> None:
    _nifti(_ct().astype(np.int16))(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rgb_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)


def _enormous(path: Path) -> None:
    """A header announcing 2048^2 x 512 voxels over a few bytes of data (a gzip bomb's shape)."""
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 512))
    header.set_data_dtype(np.int16)
    header.set_zooms((0.5, 0.5, 0.5))
    assert 2048 * 2048 * 512 > MAX_VOXELS
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + b"\0" * 1024)


def _nan(path: Path) -> None:
    ct = _ct()
    ct[10, 20, 1] = np.nan  # one voxel is enough
    _nifti(ct)(path)


CATALOGUE: Dict[str, BadInput] = {
    "mr": BadInput("mr.nii.gz", _nifti(np.random.default_rng(0).integers(0, 1200, (64, 64, 8)).astype(np.int16)),
                   "Hounsfield"),
    "rgb": BadInput("photo.png", _rgb_png, "3D CT volume|Hounsfield|neither a CT volume"),
    "segmentation": BadInput("mask.nii.gz", _nifti((_ct() > 0).astype(np.uint8)), "Hounsfield"),
    "2d": BadInput("slice.nii.gz", _nifti(np.zeros((64, 64), np.int16), np.eye(4)), "3D CT volume"),
    "empty": BadInput("empty.nii.gz", lambda path: path.write_bytes(b""), "empty (0 bytes)"),
    "truncated": BadInput("truncated.nii.gz", _truncated, "could not read"),
    "broken_affine": BadInput("affine.nii.gz", _with_header(np.zeros((4, 4)), (0.8, 0.8, 5.0)), "spacing"),
    "zero_spacing": BadInput("spacing.nii.gz", _with_header(None, (0.8, 0.8, 0.0)), "spacing"),
    "nan": BadInput("nan.nii.gz", _nan, "NaN"),
    "raw_units": BadInput("raw.nii.gz", _nifti(_ct() + 1024.0), "without the DICOM rescale"),
    "enormous": BadInput("huge.nii.gz", _enormous, "exceeds the limit"),
}


def write_chest_only(path: Path) -> None:
    """A well-formed CT that stops above L3 (chest coverage): a valid scan with nothing to measure.
    The server answers 422 on /infer/muscle_seg unless {"region": "all"}; the CLI reports it
    measured without L3 (``has_l3`` false, warning ``l3_not_found``), not failed."""
    case = generate_case(2000, 1, matrix=128, acquisition_overrides={"coverage": "chest"})
    affine, to_stored = stored_layout(case, "RAS")
    write_nifti(path, to_stored(case.hu), affine)
