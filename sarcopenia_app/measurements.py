"""Body-composition numbers on one axial slice (or averaged over a few), in physical units.

SMA is the muscle mask restricted to the muscle HU range (Mitsiopoulos 1998, -29..150 HU by
default); IMAT is the fat-range pixels inside the muscle mask; mean attenuation is over the
SMA pixels. Areas use the pixel's real size, so anisotropic pixels are measured correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

MUSCLE_HU = (-29.0, 150.0)
FAT_HU = (-190.0, -30.0)
CONTRAST_HU = (120.0, 600.0)  # enhanced blood and organs; cortical bone lies above
CONTRAST_MIN_AREA_CM2 = 1.0
METAL_HU = 2500.0  # above the densest cortical bone (about 2000 HU); scanners clip metal near 3071
METAL_MIN_AREA_CM2 = 0.1  # one connected piece: a pedicle screw or rod in cross-section is 0.2-0.3 cm²


@dataclass(frozen=True)
class SliceMeasurement:
    sma_cm2: float
    muscle_mean_hu: Optional[float]
    imat_cm2: float
    mask_area_cm2: float  # the mask before the HU restriction

    def as_dict(self) -> Dict[str, Optional[float]]:
        return {"sma_cm2": round(self.sma_cm2, 2),
                "muscle_mean_hu": None if self.muscle_mean_hu is None else round(self.muscle_mean_hu, 1),
                "imat_cm2": round(self.imat_cm2, 2), "mask_area_cm2": round(self.mask_area_cm2, 2)}


def measure_slice(hu: np.ndarray, mask: np.ndarray, pixel_mm: Sequence[float],
                  muscle_hu: Tuple[float, float] = MUSCLE_HU, fat_hu: Tuple[float, float] = FAT_HU) -> SliceMeasurement:
    """`hu` and `mask` are one 2D slice; `pixel_mm` its two pixel sides in mm."""
    if hu.shape != mask.shape or hu.ndim != 2:
        raise ValueError(f"slice and mask must be 2D of one shape, got {hu.shape} and {mask.shape}")
    pixel_cm2 = float(pixel_mm[0]) * float(pixel_mm[1]) / 100.0
    inside = np.asarray(mask) > 0
    muscle = inside & (hu >= muscle_hu[0]) & (hu <= muscle_hu[1])
    fat = inside & (hu >= fat_hu[0]) & (hu <= fat_hu[1])
    mean_hu = float(hu[muscle].mean()) if muscle.any() else None
    return SliceMeasurement(float(muscle.sum() * pixel_cm2), mean_hu, float(fat.sum() * pixel_cm2),
                            float(inside.sum() * pixel_cm2))


BORDER_PEEL_ITERATIONS = 2  # pixels peeled from the outline at most: the reach of partial volume
BORDER_OUTLIER_SD = 2.5  # a border pixel this many robust SDs below the interior's median is not muscle
INTERIOR_EROSION_PX = 2


def refine_border(hu: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask without the fat-blurred pixels at its outline.

    A mask that overreaches by a pixel keeps partial-volume pixels (half fat, half muscle: -40..20
    HU) inside the -29..150 HU range, which lowers the mean muscle HU and adds area. A pixel on the
    outline that reads far below the muscle's own interior (its median minus BORDER_OUTLIER_SD
    robust SDs, so noise alone rarely removes one) beside an outside pixel that does too (fat, or a
    pixel peeled before) is dropped; pixels beside bone or organs, interior pixels and with them
    IMAT are never touched.
    """
    mask = np.asarray(mask) > 0
    interior = ndimage.binary_erosion(mask, iterations=INTERIOR_EROSION_PX)
    if interior.sum() < 50:
        return mask.astype(np.uint8)
    values = hu[interior]
    median = float(np.median(values))
    sd = 1.4826 * float(np.median(np.abs(values - median)))
    floor = median - BORDER_OUTLIER_SD * sd
    low = hu < floor
    refined = mask.copy()
    for _ in range(BORDER_PEEL_ITERATIONS):
        border = refined & ~ndimage.binary_erosion(refined)
        beside_fat = ndimage.binary_dilation(low & ~refined)  # fat, or a pixel peeled before
        peel = border & beside_fat & low
        if not peel.any():
            break
        refined &= ~peel
    return refined.astype(np.uint8)


def average(measurements: Sequence[SliceMeasurement]) -> SliceMeasurement:
    """Slab option: the mean over several slices (mean HU weighted by each slice's SMA)."""
    sma = np.array([m.sma_cm2 for m in measurements])
    hu = [(m.muscle_mean_hu, m.sma_cm2) for m in measurements if m.muscle_mean_hu is not None]
    mean_hu = float(np.average([h for h, _ in hu], weights=[w for _, w in hu])) if hu else None
    return SliceMeasurement(float(sma.mean()), mean_hu, float(np.mean([m.imat_cm2 for m in measurements])),
                            float(np.mean([m.mask_area_cm2 for m in measurements])))


def smi_cm2_m2(sma_cm2: float, height_m: Optional[float]) -> Optional[float]:
    return None if not height_m else sma_cm2 / height_m ** 2


def contrast_suspected(hu: np.ndarray, pixel_mm: Sequence[float]) -> bool:
    """Enhanced vessels or organs on the slice: a soft-tissue blob at 120..600 HU that does not
    touch cortical bone (vertebral marrow is as dense, but sits inside its cortex)."""
    enhanced = (hu >= CONTRAST_HU[0]) & (hu <= CONTRAST_HU[1])
    enhanced = ndimage.binary_opening(enhanced, iterations=1)
    bone = ndimage.binary_dilation(hu > CONTRAST_HU[1], iterations=2)
    labels, count = ndimage.label(enhanced)
    if count == 0:
        return False
    touching_bone = np.unique(labels[bone & (labels > 0)])
    sizes = np.bincount(labels.ravel())
    pixel_cm2 = float(pixel_mm[0]) * float(pixel_mm[1]) / 100.0
    return bool(any(sizes[i] * pixel_cm2 >= CONTRAST_MIN_AREA_CM2 for i in range(1, count + 1) if i not in touching_bone))


def metal_suspected(hu: np.ndarray, pixel_mm: Sequence[float]) -> bool:
    """An implant on the slice (a piece of >= METAL_HU): its dark streaks run through psoas and
    paraspinals and read as fat, so SMA and muscle HU come out low there (docs/segmentation.md)."""
    labels, count = ndimage.label(hu >= METAL_HU)
    if count == 0:
        return False
    pixel_cm2 = float(pixel_mm[0]) * float(pixel_mm[1]) / 100.0
    return bool(np.bincount(labels.ravel())[1:].max() * pixel_cm2 >= METAL_MIN_AREA_CM2)
