"""Variation beyond the standard phantom: the draws that make a case hard in the ways real CT is.

`standard` reproduces the generator as it always was (no extra draws, the same voxels for the
same seed). `wide` adds, each with some probability, what a hospital's scans show and the
standard phantom does not: smooth random deformation of every structure, soft and sharp
reconstruction kernels at several doses, ascites, oedema and fat stranding, atrophic and fatty
muscle, thin patients whose fat planes fuse, spinal or hip metal with streaks, arms and table in
odd places, a field of view that cuts the body, 0.5..5 mm slices and gantry tilt. `stress` draws
every one of those from its extreme end. A Variation given as such with mode `forced` paints
exactly the fields it sets and widens nothing else (a named subgroup, subgroups.py).

The truth stays exact because every variation acts either on both maps at once (deformation,
tilt, field of view: the tissue map and the anatomy map move together, nearest-neighbour) or only
on what a voxel looks like (kernel, dose, streaks, oedema: HU changes, identity does not). Extra
draws come from their own random stream, so the standard draws of a seed never change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from scipy import ndimage

from .canvas import Canvas, Capsule, Ellipse
from .labels import Anatomy, Tissue
from .patient import Acquisition, Patient
from .site import SITES

VARIATIONS = ("standard", "wide", "stress", *SITES)  # a site's name: that site's fixed draws (site.py)
WIDE_SLICE_SPACINGS_MM = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
ARM_POSES = ("standard", "one_down", "on_belly", "against_body")
# a Variation built by hand: exactly its fields, no other draw widened (a named subgroup, subgroups.py)
FORCED = "forced"
STREAKS = 14  # streaks radiating from metal per slice
FAT_TO_OEDEMA = (Anatomy.SUBCUTANEOUS_FAT, Anatomy.VISCERAL_FAT, Anatomy.INTERMUSCULAR_FAT)


@dataclass(frozen=True)
class Variation:
    mode: str = "standard"
    deform_mm: float = 0.0  # amplitude of the smooth displacement of every structure
    deform_wavelength_mm: float = 160.0
    ascites_mm: float = 0.0  # rim of free fluid inside the abdominal cavity (0: none)
    oedema: float = 0.0  # 0..1: how much of the fat is stranded / oedematous
    oedema_hu: float = -30.0
    fascia_gap_mm: float = 1.3  # fat plane between wall layers; < 0.5 mm: fused planes
    metal: str = "none"  # "none", "spine" (pedicle screws and rods), "hip" (prosthesis)
    metal_level: str = "L3"  # vertebra the screws sit in
    arm_pose: str = "standard"
    table_gap_mm: float = 0.0  # extra gap between back and table (a pad)
    fov_fraction: float = 1.0  # < 1: the field of view is narrower than the body
    x_shift_mm: float = 0.0  # patient off the scanner's centre
    tilt_deg: float = 0.0  # gantry tilt, stored as a slice-by-slice shift (see `displacement`)

    def describe(self) -> Dict[str, Any]:
        return {f"variation_{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def variation_rng(seed: int, index: int) -> np.random.Generator:
    """A stream of its own: drawing variations never shifts the standard draws of a case."""
    return np.random.default_rng([seed, index, 7919])


def sample_variation(rng: np.random.Generator, mode: Union[str, Variation]) -> Variation:
    """The variation of one case; a Variation given as such is used as it is (tests, figures)."""
    if isinstance(mode, Variation):
        return mode
    if mode not in VARIATIONS:
        raise ValueError(f"variation must be one of {VARIATIONS}, not {mode!r}")
    if mode == "standard":
        return Variation()
    if mode in SITES:
        return Variation(mode=mode, **SITES[mode].variation_draws(rng))
    stress = mode == "stress"

    def chance(p_wide: float) -> bool:
        return bool(rng.random() < (min(3 * p_wide, 0.85) if stress else p_wide))

    metal = str(rng.choice(("spine", "hip"), p=(0.75, 0.25))) if chance(0.15) else "none"
    return Variation(
        mode=mode,
        deform_mm=float(rng.uniform(4.0, 9.0) if stress else rng.uniform(0.0, 6.0)),
        deform_wavelength_mm=float(rng.uniform(110.0, 170.0) if stress else rng.uniform(130.0, 220.0)),
        ascites_mm=float(rng.uniform(8.0, 25.0) if stress else rng.uniform(3.0, 15.0)) if chance(0.15) else 0.0,
        oedema=float(rng.uniform(0.4, 0.8) if stress else rng.uniform(0.1, 0.5)) if chance(0.2) else 0.0,
        oedema_hu=float(rng.uniform(-45.0, 10.0)),
        fascia_gap_mm=float(rng.uniform(0.0, 0.4)) if chance(0.2) else 1.3,
        metal=metal,
        metal_level=str(rng.choice(("L2", "L3", "L4"))),
        arm_pose=str(rng.choice(ARM_POSES[1:])) if chance(0.2) else "standard",
        table_gap_mm=float(rng.uniform(5.0, 40.0)) if chance(0.15) else 0.0,
        fov_fraction=float(rng.uniform(0.72, 0.9) if stress else rng.uniform(0.85, 0.97)) if chance(0.12) else 1.0,
        x_shift_mm=float(rng.normal(0.0, 35.0 if stress else 15.0)),
        tilt_deg=float(rng.uniform(5.0, 15.0) * rng.choice((-1, 1)) if stress else rng.uniform(-10.0, 10.0))
        if chance(0.15) else 0.0,
    )


def vary_patient(rng: np.random.Generator, patient: Patient, variation: Variation) -> Patient:
    """Atrophic, fatty and thin patients beyond the standard population's range."""
    if variation.mode in ("standard", FORCED):
        return patient
    if variation.mode in SITES:
        return SITES[variation.mode].patient(rng, patient)
    stress = variation.mode == "stress"
    muscle, muscle_hu, fat_mm, weight = patient.muscle_scale, patient.muscle_hu, patient.subcutaneous_fat_mm, patient.weight_kg
    if rng.random() < (0.5 if stress else 0.15):  # atrophic
        muscle *= rng.uniform(0.5, 0.75)
    if rng.random() < (0.5 if stress else 0.15):  # fatty infiltration well beyond myosteatosis cut-offs
        muscle_hu -= rng.uniform(12.0, 30.0)
    if variation.fascia_gap_mm < 0.5 or rng.random() < (0.3 if stress else 0.1):  # thin: little fat anywhere
        bmi = rng.uniform(14.5, 18.0)
        weight = round(bmi * patient.height_m ** 2, 1)
        fat_mm = rng.uniform(1.0, 4.0)
    arms = "down" if variation.arm_pose != "standard" else patient.arms
    return replace(patient, arms=arms, muscle_scale=float(np.clip(muscle, 0.3, 1.45)), muscle_hu=float(np.clip(muscle_hu, -5.0, 62.0)),
                   subcutaneous_fat_mm=float(fat_mm), weight_kg=float(weight))


def vary_acquisition(rng: np.random.Generator, acquisition: Acquisition, patient: Patient,
                     variation: Variation) -> Acquisition:
    """Reconstruction kernel, dose and slice spacing from a wider range."""
    if variation.mode in ("standard", FORCED):
        return acquisition
    if variation.mode in SITES:
        return SITES[variation.mode].acquisition(rng, acquisition)
    stress = variation.mode == "stress"
    kernel = str(rng.choice(("soft", "standard", "sharp"), p=(0.4, 0.2, 0.4) if stress else (0.25, 0.5, 0.25)))
    dose = rng.uniform(0.4, 2.6) if stress else rng.uniform(0.6, 1.8)  # noise factor: > 1 is low dose
    blur, correlation, noise = {"soft": (rng.uniform(0.8, 1.3), 1.0, 0.7), "standard": (acquisition.blur_mm, 0.6, 1.0),
                                "sharp": (rng.uniform(0.2, 0.35), 0.3, 1.6)}[kernel]
    spacings = (0.5, 0.625, 0.75, 5.0) if stress else WIDE_SLICE_SPACINGS_MM
    spacing = float(rng.choice(spacings))
    return replace(acquisition, blur_mm=float(blur), noise_correlation_px=float(correlation), kernel=kernel,
                   noise_hu=float(np.clip(acquisition.noise_hu * noise * dose, 4.0, 90.0)),
                   slice_spacing_mm=spacing, slice_thickness_mm=spacing)


class VariationPainter:
    """The per-slice part: ascites, oedema, metal, deformation and tilt, applied after the
    standard painters and before the HU are rendered."""

    def __init__(self, rng: np.random.Generator, variation: Variation, spine, torso, z_ref_mm: float):
        self.variation = variation
        self.spine, self.torso = spine, torso
        self.z_ref = z_ref_mm
        v = variation
        # random Fourier modes of the displacement field, fixed in 3D so neighbouring slices agree
        k = 2 * np.pi / v.deform_wavelength_mm
        self.modes = [(rng.normal(0, k, 3), rng.uniform(0, 2 * np.pi), rng.normal(0, 1, 2)) for _ in range(6)]
        norm = np.sqrt(sum(float(np.sum(w ** 2)) for _, _, w in self.modes) / 2)
        self.mode_scale = v.deform_mm / max(norm, 1e-6)
        self.oedema_field = None
        self.oedema_seed = int(rng.integers(0, 2 ** 31))
        self.streak_angles = rng.uniform(0, np.pi, STREAKS)
        self.streak_hu = rng.uniform(150.0, 450.0) * np.where(np.arange(STREAKS) % 2, 1.0, -1.0)

    # ---- structure ---------------------------------------------------------------------------
    def paint_before_warp(self, canvas: Canvas, sec) -> None:
        v = self.variation
        if v.metal != "none":
            self._paint_metal(canvas, sec)
        if v.ascites_mm > 0 and canvas.z < self.spine.by_name["T12"].z_mid:
            self._paint_ascites(canvas, sec)
        if v.oedema > 0:
            self._paint_oedema(canvas)

    def _paint_ascites(self, canvas: Canvas, sec) -> None:
        """Free fluid in the cavity's fat, against the wall and deepest posteriorly (supine)."""
        fat = sec.cavity & (canvas.anatomy == Anatomy.VISCERAL_FAT)
        if not fat.any():
            return
        depth_mm = ndimage.distance_transform_edt(sec.cavity, sampling=(canvas.sx, canvas.sy))
        posterior = np.clip((canvas.y - sec.spine_y + 60.0) / 80.0, 0.0, 1.0)
        rim = fat & (depth_mm < self.variation.ascites_mm * (0.6 + 0.8 * posterior))
        canvas.tissue[rim] = Tissue.FLUID
        canvas.anatomy[rim] = Anatomy.ASCITES

    def _paint_oedema(self, canvas: Canvas) -> None:
        """Stranding: a net of thin denser strands through the fat (identity stays fat)."""
        if self.oedema_field is None or self.oedema_field.shape != canvas.tissue.shape:
            field = np.random.default_rng(self.oedema_seed).standard_normal(canvas.tissue.shape).astype(np.float32)
            field = ndimage.gaussian_filter(field, 3.0 / np.array([canvas.sx, canvas.sy]))
            self.oedema_field = field / (field.std() + 1e-6)
        drift = int(round(canvas.z / 4.0))  # the net changes slowly along z
        field = np.roll(self.oedema_field, (drift, -drift), axis=(0, 1))
        strands = np.abs(field) < 0.25 * self.variation.oedema
        allowed = np.zeros(256, bool)
        allowed[list(FAT_TO_OEDEMA)] = True
        mask = strands & allowed[canvas.anatomy] & (canvas.tissue == Tissue.FAT)
        canvas.tissue[mask] = Tissue.OEDEMA

    def _paint_metal(self, canvas: Canvas, sec) -> None:
        z = canvas.z
        if self.variation.metal == "spine":
            level = self.spine.by_name[self.variation.metal_level]
            lower = self.spine.by_name[f"L{min(int(self.variation.metal_level[1]) + 1, 5)}"]
            canal_y = sec.spine_y + level.depth / 2 + 9.5
            for side in (-1.0, 1.0):
                if lower.z_mid - 5 <= z <= level.z_mid + 5:  # rods behind the laminae
                    canvas.paint(Ellipse(side * 22.0, canal_y + 16.0, 3.0, 3.0), Tissue.METAL, Anatomy.IMPLANT)
                for lv in (level, lower):
                    if abs(z - lv.z_mid) < 3.0:  # pedicle screws into the body
                        canvas.paint(Capsule(side * 22.0, canal_y + 16.0, side * 8.0, sec.spine_y - 5.0, 3.0),
                                     Tissue.METAL, Anatomy.IMPLANT)
        elif self.variation.metal == "hip":
            head_z = self.torso.z_hip - 15 * self.torso.size
            if abs(z - head_z) < 60.0:
                r = 24.0 * self.torso.size * np.sqrt(max(1 - ((z - head_z) / 60.0) ** 2, 0.0))
                side = 1.0
                canvas.paint(Ellipse(side * sec.cavity_half_width * 0.72, sec.spine_y - 50 * self.torso.size,
                                     r, r), Tissue.METAL, Anatomy.IMPLANT)

    def displacement(self, canvas: Canvas) -> Tuple[np.ndarray, np.ndarray]:
        """Smooth displacement (mm) of each pixel, plus the tilt's shift along y.

        Gantry tilt is stored the way a converter that ignores it writes the slices: each axial
        plane shifted in y by (z - z_ref) tan(tilt), so the body drifts through the stack."""
        x, y, z = canvas.x, canvas.y, canvas.z
        dx = np.zeros((x.shape[0], y.shape[1]), np.float32)
        dy = np.zeros_like(dx)
        if self.variation.deform_mm > 0:
            for k, phase, w in self.modes:
                wave = np.sin(k[0] * x + k[1] * y + k[2] * z + phase).astype(np.float32)
                dx += self.mode_scale * w[0] * wave
                dy += self.mode_scale * w[1] * wave
        dy += float(np.tan(np.deg2rad(self.variation.tilt_deg)) * (z - self.z_ref))
        return dx, dy

    def warp(self, canvas: Canvas) -> None:
        """Move tissue and anatomy together (nearest neighbour): the truth follows the image."""
        v = self.variation
        if v.deform_mm <= 0 and v.tilt_deg == 0:
            return
        dx, dy = self.displacement(canvas)
        i = np.rint((canvas.x - dx - canvas.x0) / canvas.sx).astype(np.int64)
        j = np.rint((canvas.y - dy - canvas.y0) / canvas.sy).astype(np.int64)
        nx, ny = canvas.tissue.shape
        outside = (i < 0) | (i >= nx) | (j < 0) | (j >= ny)
        i, j = np.clip(i, 0, nx - 1), np.clip(j, 0, ny - 1)
        tissue, anatomy = canvas.tissue[i, j], canvas.anatomy[i, j]
        tissue[outside], anatomy[outside] = Tissue.AIR, Anatomy.BACKGROUND
        canvas.tissue, canvas.anatomy = tissue, anatomy

    # ---- look ------------------------------------------------------------------------------
    def streaks(self, canvas: Canvas) -> Optional[np.ndarray]:
        """Bright and dark streaks radiating from metal in this slice (None without metal)."""
        metal = canvas.tissue == Tissue.METAL
        if not metal.any():
            return None
        ii, jj = np.nonzero(metal)
        cx = canvas.x0 + canvas.sx * ii.mean()
        cy = canvas.y0 + canvas.sy * jj.mean()
        dx, dy = canvas.x - cx, canvas.y - cy
        r = np.hypot(dx, dy)
        out = np.zeros(metal.shape, np.float32)
        for angle, hu in zip(self.streak_angles, self.streak_hu):
            across = np.abs(-np.sin(angle) * dx + np.cos(angle) * dy)
            out += (hu * np.exp(-(across / 2.0) ** 2) * np.exp(-r / 120.0)).astype(np.float32)
        return out


def tissue_hu_extras(rng: np.random.Generator, variation: Variation) -> Dict[Tissue, float]:
    """HU of the tissues that only varied cases contain."""
    return {Tissue.OEDEMA: variation.oedema_hu + float(rng.uniform(-5, 5)), Tissue.METAL: 3071.0}
