"""From tissue maps to Hounsfield units: contrast phase, texture, partial volume, blur and noise.

HU values follow published ranges: muscle 30..60 (lower with fatty infiltration), fat -120..-80,
unenhanced organs in the muscle range, enhanced organs and vessels far above it.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from scipy import ndimage

from .labels import Tissue
from .patient import Acquisition, Patient

# HU per contrast phase: (unenhanced, arterial, portal venous)
_PHASE_HU: Dict[Tissue, tuple] = {
    Tissue.ARTERY: (42, 300, 165),
    Tissue.VEIN: (40, 95, 150),
    Tissue.LIVER: (58, 72, 112),
    Tissue.SPLEEN: (48, 125, 118),
    Tissue.KIDNEY: (32, 175, 185),
    Tissue.BOWEL_WALL: (40, 70, 95),
    Tissue.MYOCARDIUM: (45, 110, 100),
    Tissue.ORGAN_MUSCLE: (50, 62, 68),
}


def tissue_hu_table(rng: np.random.Generator, patient: Patient, acquisition: Acquisition) -> np.ndarray:
    """Mean HU of every tissue class for this case (index = Tissue value)."""
    phase = ("unenhanced", "arterial", "portal_venous").index(acquisition.contrast_phase)
    osteo = patient.osteoporosis
    # lower kVp raises the HU of dense and iodinated materials
    kv = {100: 1.15, 120: 1.0, 140: 0.92}[acquisition.kvp]
    table = np.zeros(max(Tissue) + 1, np.float32)
    values = {
        Tissue.AIR: -1000, Tissue.LUNG: rng.uniform(-880, -820), Tissue.FAT: rng.uniform(-112, -88),
        Tissue.MUSCLE: patient.muscle_hu, Tissue.SKIN: rng.uniform(20, 50),
        Tissue.CORTICAL_BONE: (1050 - 350 * osteo) * kv, Tissue.CANCELLOUS_BONE: (260 - 170 * osteo) * kv,
        Tissue.MARROW: (190 - 90 * osteo) * kv, Tissue.DISC: rng.uniform(70, 95), Tissue.CSF: rng.uniform(5, 15),
        Tissue.URINE: rng.uniform(3, 15), Tissue.GAS: rng.uniform(-1000, -960), Tissue.FLUID: rng.uniform(5, 25),
        Tissue.FECES: 0.0, Tissue.ORAL_CONTRAST: rng.uniform(180, 400), Tissue.TABLE_FOAM: rng.uniform(-320, -200),
        Tissue.TABLE_SHELL: rng.uniform(150, 350), Tissue.BILE: rng.uniform(0, 15),
    }
    for tissue, hu in values.items():
        table[tissue] = hu
    for tissue, per_phase in _PHASE_HU.items():
        base = per_phase[phase]
        table[tissue] = base if phase == 0 else base + (base - per_phase[0]) * (kv - 1.0) + rng.uniform(-12, 12)
    table[Tissue.ORGAN_MUSCLE] = patient.muscle_hu + (table[Tissue.ORGAN_MUSCLE] - 50.0)
    return table


class Renderer:
    """Turns a tissue map into HU with texture; blur and noise are applied to the whole volume."""

    def __init__(self, rng: np.random.Generator, patient: Patient, acquisition: Acquisition,
                 shape_xy: tuple, spacing_xy_mm: tuple):
        self.rng = rng
        self.acquisition = acquisition
        self.hu = tissue_hu_table(rng, patient, acquisition)
        self.spacing_xy = spacing_xy_mm
        # one smooth texture tile, shifted per slice: cheap stand-in for 3D tissue texture
        tile = rng.standard_normal(shape_xy).astype(np.float32)
        self.texture = ndimage.gaussian_filter(tile, 2.0 / np.asarray(spacing_xy_mm))
        self.texture /= self.texture.std() + 1e-6
        self.texture_amplitude = np.zeros_like(self.hu)
        for tissue, amp in ((Tissue.MUSCLE, 4.0), (Tissue.FAT, 6.0), (Tissue.LIVER, 5.0), (Tissue.SPLEEN, 6.0),
                            (Tissue.CANCELLOUS_BONE, 35.0), (Tissue.MARROW, 30.0), (Tissue.LUNG, 25.0),
                            (Tissue.KIDNEY, 8.0)):
            self.texture_amplitude[tissue] = amp

    def slice_hu(self, tissue: np.ndarray) -> np.ndarray:
        shift = tuple(int(v) for v in self.rng.integers(0, tissue.shape))
        texture = np.roll(self.texture, shift, axis=(0, 1))
        hu = self.hu[tissue] + self.texture_amplitude[tissue] * texture
        feces = tissue == Tissue.FECES
        if feces.any():
            bubbles = np.roll(texture, (7, 13), axis=(0, 1)) > 0.6
            hu[feces] = np.where(bubbles[feces], -850.0, 25.0 + 20.0 * texture[feces])
        return hu

    def finish(self, volume_hu: np.ndarray) -> np.ndarray:
        """In-plane blur (scanner PSF), correlated noise, then int16 HU."""
        sigma_px = [self.acquisition.blur_mm / s for s in self.spacing_xy] + [0.0]
        ndimage.gaussian_filter(volume_hu, sigma_px, output=volume_hu)
        noise = self.rng.standard_normal(volume_hu.shape, dtype=np.float32)
        corr = [self.acquisition.noise_correlation_px] * 2 + [0.0]
        ndimage.gaussian_filter(noise, corr, output=noise)
        noise *= self.acquisition.noise_hu / (noise[::4, ::4, :].std() + 1e-6)
        volume_hu += noise
        return np.clip(np.rint(volume_hu), -1024, 3071).astype(np.int16)
