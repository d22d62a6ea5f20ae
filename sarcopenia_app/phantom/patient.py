"""Who is scanned and how: the random draws that make one phantom case differ from another.

Distributions are chosen to span the population a hospital sees (lean to obese, sarcopenic to
muscular, unenhanced and contrast phases, thin and thick slices, partial coverage), not to match
any one cohort's statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

import numpy as np

CONTRAST_PHASES = ("unenhanced", "arterial", "portal_venous")
COVERAGES = ("abdomen", "abdomen_pelvis", "chest_abdomen_pelvis", "chest", "pelvis")
SLICE_SPACINGS_MM = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


@dataclass(frozen=True)
class Patient:
    sex: str  # "M" or "F"
    age_years: int
    height_m: float
    weight_kg: float
    muscle_scale: float  # 1.0 = average muscle mass for the sex; < 0.8 sarcopenic
    muscle_hu: float  # mean attenuation of lean muscle; low values = myosteatosis
    subcutaneous_fat_mm: float  # anterior abdominal subcutaneous fat at L3
    visceral_fat_scale: float
    osteoporosis: float  # 0..1
    arms: str  # "up" or "down"

    @property
    def bmi(self) -> float:
        return self.weight_kg / self.height_m ** 2


@dataclass(frozen=True)
class Acquisition:
    contrast_phase: str
    coverage: str
    slice_spacing_mm: float
    slice_thickness_mm: float
    noise_hu: float
    blur_mm: float
    orientation: str  # storage orientation of the NIfTI: "RAS" or "LPS"
    kvp: int
    noise_correlation_px: float = 0.6  # noise texture: larger for soft kernels, smaller for sharp ones
    kernel: str = "standard"  # reconstruction kernel: "soft", "standard" or "sharp" (variation.py)


def sample_patient(rng: np.random.Generator) -> Patient:
    sex = "M" if rng.random() < 0.5 else "F"
    height = rng.normal(1.76, 0.07) if sex == "M" else rng.normal(1.63, 0.065)
    height = float(np.clip(height, 1.45, 2.0))
    bmi = float(np.clip(rng.normal(26.5, 5.0), 16.5, 43.0))
    age = int(rng.integers(25, 90))
    sarcopenic = rng.random() < 0.25
    muscle = rng.uniform(0.6, 0.85) if sarcopenic else rng.normal(1.05, 0.13)
    muscle = float(np.clip(muscle * (1.0 - 0.003 * max(age - 50, 0)), 0.45, 1.45))
    muscle_hu = rng.normal(46.0, 6.0) - 0.5 * (bmi - 25.0) - 0.15 * max(age - 50, 0)
    if rng.random() < 0.2:  # marked fatty infiltration
        muscle_hu -= rng.uniform(8.0, 18.0)
    fat_mm = max(3.0, (bmi - 17.0) * rng.uniform(1.9, 2.9) * (1.35 if sex == "F" else 1.0))
    visceral = float(np.clip((bmi - 18.0) / 10.0 * (1.3 if sex == "M" else 0.8) * rng.uniform(0.6, 1.4), 0.05, 3.0))
    return Patient(
        sex=sex,
        age_years=age,
        height_m=round(height, 3),
        weight_kg=round(bmi * height ** 2, 1),
        muscle_scale=muscle,
        muscle_hu=float(np.clip(muscle_hu, 12.0, 62.0)),
        subcutaneous_fat_mm=float(fat_mm),
        visceral_fat_scale=visceral,
        osteoporosis=float(np.clip((age - 45) / 40.0 + rng.normal(0, 0.15), 0.0, 1.0)),
        arms="down" if rng.random() < 0.3 else "up",
    )


def sample_acquisition(rng: np.random.Generator, patient: Patient) -> Acquisition:
    phase = str(rng.choice(CONTRAST_PHASES, p=[0.4, 0.15, 0.45]))
    coverage = str(rng.choice(COVERAGES, p=[0.42, 0.2, 0.18, 0.1, 0.1]))
    spacing = float(rng.choice(SLICE_SPACINGS_MM))
    # bigger patients are noisier at the same dose
    noise = float(np.clip(rng.uniform(10.0, 30.0) * (1.0 + 0.025 * max(patient.bmi - 25.0, 0.0)), 10.0, 40.0))
    return Acquisition(
        contrast_phase=phase,
        coverage=coverage,
        slice_spacing_mm=spacing,
        slice_thickness_mm=spacing,
        noise_hu=noise,
        blur_mm=float(rng.uniform(0.35, 0.8)),
        orientation="RAS" if rng.random() < 0.5 else "LPS",
        kvp=int(rng.choice([100, 120, 120, 140])),
    )


def describe(patient: Patient, acquisition: Acquisition) -> Dict[str, Any]:
    """Flat JSON-ready record of the draws, for the ground-truth sidecar."""
    record = {f"patient_{k}": v for k, v in asdict(patient).items()}
    record.update({f"acquisition_{k}": v for k, v in asdict(acquisition).items()})
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
