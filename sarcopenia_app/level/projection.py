"""Coronal projections of a CT: the whole spine, ribs and pelvis in one small 2D picture.

Counting vertebrae needs context along z (ribs end at T12, the iliac wings start at L5), which a
single axial slice lacks. A frontal bone projection holds it in a few kilobytes, whatever the
matrix, and is what a radiographer's scout view shows. Rows are 2 mm apart along the patient's
superior axis, columns 3 mm apart across, centred on the body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.data.utils import affine_to_spacing
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Orientation

ROW_MM = 2.0
COLUMN_MM = 3.0
WIDTH_PX = 160  # 480 mm across: the trunk; arms held down may be cut at the edges
BONE_HU = (100.0, 1100.0)
SOFT_HU = (-200.0, 200.0)
BODY_MIN_HU = -500.0
CHANNELS = 2


@dataclass
class Projection:
    """`image` (CHANNELS, WIDTH_PX, rows) and how rows map back to the scan.

    Row r lies `r * ROW_MM` above the centre of the lowest slice; `ras_slice(r)` is the (fractional)
    slice index in the RAS-oriented volume, `stored_slice(r)` the index along the stored array's
    superior-inferior axis (`stored_axis`).
    """

    image: np.ndarray
    slice_spacing_mm: float
    n_slices: int
    stored_axis: int
    stored_flipped: bool

    @property
    def rows(self) -> int:
        return self.image.shape[-1]

    def ras_slice(self, row: float) -> float:
        return row * ROW_MM / self.slice_spacing_mm

    def stored_slice(self, row: float) -> float:
        ras = self.ras_slice(row)
        return (self.n_slices - 1 - ras) if self.stored_flipped else ras

    def row_of_ras_slice(self, ras_slice: float) -> float:
        return ras_slice * self.slice_spacing_mm / ROW_MM


def superior_axis(affine: np.ndarray) -> tuple:
    """(stored axis that runs along the patient's S-I direction, True if its index runs downwards)."""
    directions = np.asarray(affine, float)[:3, :3]
    axis = int(np.argmax(np.abs(directions[2])))  # RAS world: third row is superior
    return axis, bool(directions[2, axis] < 0)


def to_ras(image_hu: MetaTensor) -> MetaTensor:
    """(1, X, Y, Z) in RAS: axial slices along the last axis, from inferior to superior."""
    return Orientation(axcodes="RAS")(MetaTensor(image_hu.float(), affine=image_hu.affine))


def project(image_hu: MetaTensor) -> Projection:
    """Coronal bone maximum and soft-tissue mean projections of a (1, X, Y, Z) HU volume."""
    axis, flipped = superior_axis(image_hu.affine.numpy() if hasattr(image_hu.affine, "numpy") else image_hu.affine)
    ras = to_ras(image_hu)
    volume = ras[0].as_tensor()
    spacing = affine_to_spacing(np.asarray(ras.affine, float), r=3)
    bone = ((volume.amax(dim=1) - BONE_HU[0]) / (BONE_HU[1] - BONE_HU[0])).clamp(0, 1)
    soft = ((volume.clamp(*SOFT_HU) - SOFT_HU[0]) / (SOFT_HU[1] - SOFT_HU[0])).mean(dim=1)
    body = (volume > BODY_MIN_HU).any(dim=1).any(dim=1).float()  # (X,) columns holding any body
    stack = torch.stack([bone, soft])[None]  # (1, 2, X, Z)
    n_x, n_z = volume.shape[0], volume.shape[2]
    width_mm, length_mm = n_x * spacing[0], (n_z - 1) * spacing[2]
    out_x = max(int(round(width_mm / COLUMN_MM)), 1)
    out_z = int(np.floor(length_mm / ROW_MM)) + 1
    # rows at exactly r * ROW_MM from the lowest slice centre: sample slice positions explicitly
    rows = torch.as_tensor(np.arange(out_z) * ROW_MM / spacing[2], dtype=torch.float32)
    grid_z = (2 * rows / max(n_z - 1, 1) - 1) if n_z > 1 else torch.zeros_like(rows)
    columns = (np.arange(out_x) + 0.5) * COLUMN_MM / spacing[0] - 0.5  # input pixel index of each centre
    grid_x = torch.as_tensor(2 * columns / max(n_x - 1, 1) - 1, dtype=torch.float32)
    gx, gz = torch.meshgrid(grid_x, grid_z, indexing="ij")
    grid = torch.stack([gz, gx], dim=-1)[None]  # grid_sample wants (x=last dim of input, y)
    resampled = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    centre = _body_centre_column(body.numpy(), out_x)
    image = _centre_columns(resampled.numpy(), centre)
    return Projection(image.astype(np.float32), float(spacing[2]), n_z, axis, flipped)


def _body_centre_column(body_columns: np.ndarray, out_x: int) -> int:
    columns = np.nonzero(body_columns)[0]
    if columns.size == 0:
        return out_x // 2
    centre_fraction = (columns[0] + columns[-1] + 1) / 2 / body_columns.size
    return int(round(centre_fraction * out_x))


def _centre_columns(image: np.ndarray, centre: int) -> np.ndarray:
    """Crop or pad (with zeros) the column axis to WIDTH_PX around `centre`."""
    out = np.zeros((image.shape[0], WIDTH_PX, image.shape[2]), image.dtype)
    start = centre - WIDTH_PX // 2
    src0, src1 = max(start, 0), min(start + WIDTH_PX, image.shape[1])
    out[:, src0 - start:src1 - start] = image[:, src0:src1]
    return out
