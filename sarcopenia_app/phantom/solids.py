"""3D shapes cut by the current slice: ellipsoids (organs) and tubes (bowel, vessels, ribs).

Each returns a 2D canvas shape for the slice z, or None where the slice misses it, so organs
change size and position smoothly from slice to slice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence

import numpy as np

from .canvas import Ellipse


@dataclass(frozen=True)
class Ellipsoid:
    cx: float
    cy: float
    cz: float
    a: float
    b: float
    c: float  # semi-axis along z
    angle_rad: float = 0.0
    drift_x: float = 0.0  # centre moves this many mm in x per mm in z (organs lie tilted)
    drift_y: float = 0.0

    def at(self, z: float) -> Optional[Ellipse]:
        t = (z - self.cz) / self.c
        if abs(t) >= 1.0:
            return None
        scale = float(np.sqrt(1.0 - t * t))
        dz = z - self.cz
        return Ellipse(self.cx + self.drift_x * dz, self.cy + self.drift_y * dz,
                       self.a * scale, self.b * scale, self.angle_rad)

    def shrunk(self, by_mm: float) -> "Ellipsoid":
        return replace(self, a=self.a - by_mm, b=self.b - by_mm, c=self.c - by_mm)


@dataclass(frozen=True)
class SegmentSection:
    """A slice through a 3D capsule (segment p0-p1 with radius r). With `level_frac`, only the
    part above a horizontal level (a gas cap over fluid in a supine patient) is inside."""

    p0: tuple
    p1: tuple
    r: float
    z: float
    level_frac: Optional[float] = None

    def _t_range(self):
        dz = self.p1[2] - self.p0[2]
        if abs(dz) < 1e-6:
            return 0.0, 1.0
        ta, tb = sorted(((self.z - self.r - self.p0[2]) / dz, (self.z + self.r - self.p0[2]) / dz))
        return max(ta, 0.0), min(tb, 1.0)

    def extent_mm(self):
        t0, t1 = self._t_range()
        xs = [self.p0[0] + t * (self.p1[0] - self.p0[0]) for t in (t0, t1)]
        ys = [self.p0[1] + t * (self.p1[1] - self.p0[1]) for t in (t0, t1)]
        return min(xs) - self.r, max(xs) + self.r, min(ys) - self.r, max(ys) + self.r

    def inside(self, x, y):
        d = np.subtract(self.p1, self.p0)
        length2 = max(float(d @ d), 1e-9)
        zz = self.z - self.p0[2]
        t = np.clip(((x - self.p0[0]) * d[0] + (y - self.p0[1]) * d[1] + zz * d[2]) / length2, 0.0, 1.0)
        cy = self.p0[1] + t * d[1]
        dist2 = (x - self.p0[0] - t * d[0]) ** 2 + (y - cy) ** 2 + (zz - t * d[2]) ** 2
        mask = dist2 < self.r ** 2
        if self.level_frac is not None:
            mask &= (y - cy) < -self.level_frac * self.r
        return mask

    def shrunk(self, by_mm):
        return replace(self, r=self.r - by_mm)


@dataclass(frozen=True)
class Tube:
    """A polyline tube with a wall: bowel loop, colon or vessel."""

    points: np.ndarray  # (n, 3) mm
    radius: float
    wall_mm: float = 0.0

    def sections(self, z: float, radius: Optional[float] = None, level_frac: Optional[float] = None
                 ) -> List[SegmentSection]:
        r = self.radius if radius is None else radius
        out = []
        for p0, p1 in zip(self.points[:-1], self.points[1:]):
            if min(p0[2], p1[2]) - r <= z <= max(p0[2], p1[2]) + r:
                out.append(SegmentSection(tuple(p0), tuple(p1), r, z, level_frac))
        return out


def polyline(points: Sequence[Sequence[float]], step_mm: float, rng: np.random.Generator,
             wiggle_mm: float) -> np.ndarray:
    """Resample control points every `step_mm` and add a smooth random wiggle."""
    pts = np.asarray(points, np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(s[-1] / step_mm), 2)
    si = np.linspace(0.0, s[-1], n)
    out = np.stack([np.interp(si, s, pts[:, k]) for k in range(3)], axis=1)
    noise = rng.normal(0.0, wiggle_mm, size=out.shape)
    noise[0] = noise[-1] = 0.0
    kernel = np.array([0.25, 0.5, 0.25])
    for k in range(3):
        noise[:, k] = np.convolve(noise[:, k], kernel, mode="same")
    return out + noise


def random_walk(start: Sequence[float], steps: int, step_mm: float, lo: Sequence[float],
                hi: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """A loop that wanders inside a box, turning gradually, like small bowel."""
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    p = np.asarray(start, float)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    pts = [p.copy()]
    for _ in range(steps):
        direction = direction + rng.normal(0.0, 0.7, 3)
        direction /= np.linalg.norm(direction)
        p = p + direction * step_mm
        bounce = (p < lo_a) | (p > hi_a)
        direction[bounce] *= -1.0
        p = np.clip(p, lo_a, hi_a)
        pts.append(p.copy())
    return np.asarray(pts)
