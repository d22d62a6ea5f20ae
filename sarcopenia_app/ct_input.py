"""Checks that an input really is a CT volume in Hounsfield units, with messages a user can act on."""

from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_SLICES = 1
# 512 x 512 x 1024 slices: a thin-slice abdomen-pelvis CT fits. Larger volumes are refused from
# the file header, before their voxels are read, so the memory an inference takes stays bounded
# (measured per voxel in docs/reliability.md).
MAX_VOXELS = 512 * 512 * 1024


class InvalidCTError(ValueError):
    """The input cannot be processed as a CT; the message says why and what to send instead."""


def check_ct_array(volume: np.ndarray, spacing_mm: Sequence[float]) -> None:
    """`volume` without channel axis: (X, Y, Z) in HU."""
    if volume.ndim != 3:
        raise InvalidCTError(
            f"expected a 3D CT volume (X, Y, Z), got an array of shape {tuple(volume.shape)}: "
            "send a NIfTI/NRRD volume or a whole DICOM series, not a single 2D or colour image")
    if min(volume.shape[:2]) < 32:
        raise InvalidCTError(f"axial slices of {volume.shape[0]}x{volume.shape[1]} pixels are too small for a CT")
    check_voxel_count(volume.shape)
    spacing = np.asarray(spacing_mm, float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InvalidCTError(f"voxel spacing {spacing.tolist()} mm is not valid: the header's affine is broken")
    if volume.dtype.kind == "f" and not np.all(np.isfinite(volume)):  # one bad voxel is enough: check all
        raise InvalidCTError("the volume contains NaN or infinite values: the file is damaged or was "
                             "written by a faulty conversion; export the series again")
    sample = volume[::4, ::4, :: max(volume.shape[2] // 16, 1)]
    low, high = np.percentile(sample, [1, 99.5])
    if -500 < low < -100 and 0 < high <= 3000:  # fat and bone values, no air: cut inside the skin
        raise InvalidCTError(
            f"no air in the field of view (intensities from {low:.0f} to {high:.0f} HU): this looks like a CT "
            "cropped inside the body; muscle area is measured on the whole cross-section, skin to skin: "
            "send the uncropped scan")
    if low > -500 or high < 0 or high > 10000:
        raise InvalidCTError(
            f"intensities from {low:.0f} to {high:.0f} do not look like CT in Hounsfield units (air near -1000, "
            "soft tissue 0..100): is this another modality, or raw values without the DICOM rescale?")


def check_voxel_count(shape: Sequence[int]) -> None:
    """Refuse a volume larger than MAX_VOXELS; callers pass the header's shape before reading voxels."""
    voxels = int(np.prod([int(n) for n in shape], dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise InvalidCTError(f"volume of {tuple(int(n) for n in shape)} = {voxels / 1e6:.0f} million voxels exceeds "
                             f"the limit of {MAX_VOXELS / 1e6:.0f} million: crop it to the abdomen first")
