"""One axial slice being painted: millimetre grids, shape primitives and priority painting.

Coordinates are patient LPS in mm: x grows to the patient's left, y grows posterior, z superior.
Array axes are (x, y). Shapes are evaluated only inside their bounding box, which is what keeps a
512x512 slice with dozens of structures at a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Optional, Protocol, Tuple

import numpy as np

from .labels import Tissue

BBox = Tuple[slice, slice]


class Shape(Protocol):
    def extent_mm(self) -> Tuple[float, float, float, float]:
        """x_min, x_max, y_min, y_max."""

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask for broadcast grids x (column vector) and y (row vector)."""

    def shrunk(self, by_mm: float) -> "Shape":
        """The same shape with its boundary moved inwards (for cortical shells, walls)."""


@dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    a: float  # semi-axis along x before rotation
    b: float
    angle_rad: float = 0.0
    power: float = 2.0  # superellipse exponent: >2 squarer

    def extent_mm(self):
        r = max(self.a, self.b) * (1.0 if self.power <= 2 else 1.42)
        return self.cx - r, self.cx + r, self.cy - r, self.cy + r

    def inside(self, x, y):
        dx, dy = x - self.cx, y - self.cy
        if self.angle_rad:
            c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        a, b = max(self.a, 1e-3), max(self.b, 1e-3)
        return np.abs(dx / a) ** self.power + np.abs(dy / b) ** self.power < 1.0

    def shrunk(self, by_mm):
        return replace(self, a=self.a - by_mm, b=self.b - by_mm)


@dataclass(frozen=True)
class Capsule:
    """Thick line segment in the slice plane."""

    x0: float
    y0: float
    x1: float
    y1: float
    r: float

    def extent_mm(self):
        return (min(self.x0, self.x1) - self.r, max(self.x0, self.x1) + self.r,
                min(self.y0, self.y1) - self.r, max(self.y0, self.y1) + self.r)

    def inside(self, x, y):
        dx, dy = self.x1 - self.x0, self.y1 - self.y0
        length2 = max(dx * dx + dy * dy, 1e-9)
        t = np.clip(((x - self.x0) * dx + (y - self.y0) * dy) / length2, 0.0, 1.0)
        return (x - self.x0 - t * dx) ** 2 + (y - self.y0 - t * dy) ** 2 < self.r ** 2

    def shrunk(self, by_mm):
        return replace(self, r=self.r - by_mm)


class Canvas:
    """Tissue and anatomy maps of one slice plus the geometry to paint on them."""

    def __init__(self, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: float):
        self.x = x_mm[:, None].astype(np.float32)
        self.y = y_mm[None, :].astype(np.float32)
        self.x0, self.y0 = float(x_mm[0]), float(y_mm[0])
        self.sx, self.sy = float(x_mm[1] - x_mm[0]), float(y_mm[1] - y_mm[0])
        self.z = z_mm
        shape = (x_mm.size, y_mm.size)
        self.tissue = np.full(shape, Tissue.AIR, np.uint8)
        self.anatomy = np.zeros(shape, np.uint8)

    def bbox(self, x_min: float, x_max: float, y_min: float, y_max: float) -> Optional[BBox]:
        nx, ny = self.tissue.shape
        i0 = max(int(np.floor((x_min - self.x0) / self.sx)), 0)
        i1 = min(int(np.ceil((x_max - self.x0) / self.sx)) + 1, nx)
        j0 = max(int(np.floor((y_min - self.y0) / self.sy)), 0)
        j1 = min(int(np.ceil((y_max - self.y0) / self.sy)) + 1, ny)
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def shape_mask(self, shape: Shape) -> Tuple[Optional[BBox], Optional[np.ndarray]]:
        box = self.bbox(*shape.extent_mm())
        if box is None:
            return None, None
        return box, shape.inside(self.x[box[0]], self.y[:, box[1]])

    def paint(self, shape: Shape, tissue: Tissue, anatomy: int,
              into: Optional[Iterable[int]] = None, where: Optional[np.ndarray] = None) -> None:
        """Paint a shape; `into` limits it to pixels whose current anatomy is listed,
        `where` (a full-slice mask) limits it further."""
        box, mask = self.shape_mask(shape)
        if box is None:
            return
        self.paint_mask(box, mask, tissue, anatomy, into, where)

    def paint_mask(self, box: BBox, mask: np.ndarray, tissue: Tissue, anatomy: int,
                   into: Optional[Iterable[int]] = None, where: Optional[np.ndarray] = None) -> None:
        if into is not None:
            allowed = np.zeros(256, bool)
            allowed[list(into)] = True
            mask = mask & allowed[self.anatomy[box]]
        if where is not None:
            mask = mask & where[box]
        self.tissue[box][mask] = tissue
        self.anatomy[box][mask] = anatomy

    def bone(self, shape: Shape, anatomy: int, cortex_mm: float,
             core: Tissue = Tissue.CANCELLOUS_BONE, into: Optional[Iterable[int]] = None) -> None:
        """A bone: dense cortical shell around a softer core."""
        self.paint(shape, Tissue.CORTICAL_BONE, anatomy, into)
        self.paint(shape.shrunk(cortex_mm), core, anatomy, into)
