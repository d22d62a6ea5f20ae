"""A fixed "new site": one hospital's scanner protocol and population, set far from the standard
phantom draws (the shipped model's training domain), for domain-shift benchmarks.

The standard draws span soft to standard reconstruction (blur 0.35..0.8 mm, noise correlation
0.6 px), noise 10..40 HU, every contrast phase and coverage, 1..5 mm slices, BMI around 26.5 (SD 5)
and a field of view that always holds the whole body. The new site is one scanner and one
protocol at or beyond the edge of all of that at once: a sharp kernel at low dose (noise above the
standard maximum), 100 kVp portal-venous abdominal scans in 5 mm slices, a field of view that cuts
the flanks, and an obese population. Its draws come from the variation stream
(`variation.variation_rng`), so a case's sex, height, age and anatomy are those of the standard
draw of the same seed and index; only what the site changes differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Tuple

import numpy as np

from .patient import Acquisition, Patient

Range = Tuple[float, float]


@dataclass(frozen=True)
class Site:
    name: str
    kernel: str
    blur_mm: Range  # in-plane PSF sigma
    noise_correlation_px: float
    noise_hu: Range
    kvp: int
    contrast_phase: str
    coverage: str
    slice_spacing_mm: float  # slice thickness = spacing
    bmi: Range
    subcutaneous_fat_mm: Range
    visceral_fat_scale: Range
    fov_fraction: Range  # < 1: the field of view is narrower than the body

    def patient(self, rng: np.random.Generator, patient: Patient) -> Patient:
        """The site's habitus on the standard patient: weight, fat and the muscle attenuation that
        goes with a higher BMI (-0.5 HU per BMI point, the standard population's slope)."""
        bmi = float(rng.uniform(*self.bmi))
        return replace(patient, weight_kg=round(bmi * patient.height_m ** 2, 1),
                       subcutaneous_fat_mm=float(rng.uniform(*self.subcutaneous_fat_mm)),
                       visceral_fat_scale=float(rng.uniform(*self.visceral_fat_scale)),
                       muscle_hu=float(np.clip(patient.muscle_hu - 0.5 * (bmi - patient.bmi), 5.0, 62.0)))

    def acquisition(self, rng: np.random.Generator, acquisition: Acquisition) -> Acquisition:
        return replace(acquisition, kernel=self.kernel, blur_mm=float(rng.uniform(*self.blur_mm)),
                       noise_correlation_px=self.noise_correlation_px, noise_hu=float(rng.uniform(*self.noise_hu)),
                       kvp=self.kvp, contrast_phase=self.contrast_phase, coverage=self.coverage,
                       slice_spacing_mm=self.slice_spacing_mm, slice_thickness_mm=self.slice_spacing_mm)

    def variation_draws(self, rng: np.random.Generator) -> Dict[str, float]:
        """The site's fields of `variation.Variation` (the others keep their standard values)."""
        return {"fov_fraction": float(rng.uniform(*self.fov_fraction))}

    def describe(self) -> Dict[str, Any]:
        return asdict(self)


NEW_SITE = Site(name="new_site", kernel="sharp", blur_mm=(0.2, 0.3), noise_correlation_px=0.3,
                noise_hu=(55.0, 75.0), kvp=100, contrast_phase="portal_venous", coverage="abdomen",
                slice_spacing_mm=5.0, bmi=(35.0, 42.0), subcutaneous_fat_mm=(45.0, 70.0),
                visceral_fat_scale=(1.8, 3.0), fov_fraction=(0.8, 0.9))
SITES = {NEW_SITE.name: NEW_SITE}
