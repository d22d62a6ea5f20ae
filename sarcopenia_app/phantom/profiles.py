"""Small numeric helpers shared by the anatomy painters."""

from __future__ import annotations

from typing import Sequence

import numpy as np

PHI_BINS = 361  # 0.5 degree bins of the angle from the anterior midline, 0..180 degrees
PHI_DEG = np.linspace(0.0, 180.0, PHI_BINS)


def along(z: float, zs: Sequence[float], values: Sequence[float]) -> float:
    """Piecewise-linear profile along z through control points (zs ascending), flat outside."""
    return float(np.interp(z, zs, values))


def window(phi: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """1 inside [start, end] degrees, smooth cosine ramps of `ramp` degrees outside, else 0."""
    up = np.clip((phi - (start - ramp)) / ramp, 0.0, 1.0)
    down = np.clip(((end + ramp) - phi) / ramp, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))).astype(np.float32)


def smoothstep(x: float, lo: float, hi: float) -> float:
    t = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)
