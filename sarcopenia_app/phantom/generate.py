"""Build one synthetic abdominal CT case with exact ground truth, deterministically from a seed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .canvas import Canvas
from .labels import TRUNK_MUSCLES
from .patient import Acquisition, Patient, sample_acquisition, sample_patient
from .profiles import PHI_BINS
from .render import Renderer
from .skeleton import Skeleton
from .spine import Spine
from .torso import IntramuscularFat, Torso
from .variation import Variation, VariationPainter, sample_variation, tissue_hu_extras, vary_acquisition, vary_patient, variation_rng
from .viscera import Viscera

SUB_SLICES_THICK = 3  # sub-planes averaged per slice when slices are >= 2.5 mm (partial volume)


@dataclass
class PhantomCase:
    """One case in canonical layout: array axes (x -> patient left, y -> posterior, z -> superior)."""

    case_id: str
    seed: int
    index: int
    hu: np.ndarray  # int16
    anatomy: np.ndarray  # uint8, labels.Anatomy codes
    spacing_mm: Tuple[float, float, float]
    origin_lps_mm: Tuple[float, float, float]  # LPS position of voxel (0, 0, 0)
    z_anatomical_mm: np.ndarray  # per slice, 0 = bottom of S1
    patient: Patient
    acquisition: Acquisition
    spine: Spine
    variation: Variation = Variation()

    @property
    def muscle(self) -> np.ndarray:
        return np.isin(self.anatomy, [int(m) for m in TRUNK_MUSCLES]).astype(np.uint8)

    def level_slices(self, level: str) -> List[int]:
        lv = self.spine.by_name[level]
        z = self.z_anatomical_mm
        return [int(k) for k in np.nonzero((z >= lv.z_bottom) & (z <= lv.z_top))[0]]

    def level_mid_index(self, level: str) -> Optional[int]:
        """Slice nearest the middle of the level's body, or None when that middle is not scanned."""
        z_mid = self.spine.by_name[level].z_mid
        z = self.z_anatomical_mm
        half = self.spacing_mm[2] / 2
        if z_mid < z[0] - half or z_mid > z[-1] + half:
            return None
        k = int(np.argmin(np.abs(z - z_mid)))
        return k if k in self.level_slices(level) else None

    @property
    def l3_mid_index(self) -> Optional[int]:
        return self.level_mid_index("L3")

    def sma_cm2(self, k: int) -> float:
        return float(self.muscle[:, :, k].sum() * self.spacing_mm[0] * self.spacing_mm[1] / 100.0)


def _z_range(rng: np.random.Generator, coverage: str, spine: Spine, torso: Torso) -> Tuple[float, float]:
    lv = spine.by_name
    if coverage == "abdomen":
        return lv["T10"].z_mid + rng.uniform(-15, 25), rng.uniform(torso.z_hip, lv["S1"].z_top - 5)
    if coverage == "abdomen_pelvis":
        return lv["T10"].z_mid + rng.uniform(-15, 25), torso.z_pubis - rng.uniform(0, 30)
    if coverage == "chest_abdomen_pelvis":
        return lv["T3"].z_mid + rng.uniform(-10, 10), torso.z_pubis - rng.uniform(0, 30)
    if coverage == "chest":
        return lv["T2"].z_mid, rng.uniform(lv["L2"].z_mid, lv["L1"].z_mid)
    if coverage == "pelvis":
        return rng.uniform(lv["L5"].z_top, lv["L4"].z_mid), torso.z_pubis - rng.uniform(20, 40)
    raise ValueError(f"unknown coverage {coverage!r}")


def _slice_positions(rng: np.random.Generator, top: float, bottom: float, spacing: float,
                     max_slices: int, centre_mid: float) -> np.ndarray:
    n = int(round((top - bottom) / spacing)) + 1
    if n > max_slices:
        length = (max_slices - 1) * spacing
        if bottom <= centre_mid <= top:  # keep the centre level (L3 unless asked) well inside a shorter scan
            start = centre_mid - length * rng.uniform(0.3, 0.7)
        else:
            start = rng.uniform(bottom, top - length)
        bottom, n = float(np.clip(start, bottom, top - length)), max_slices
    return bottom + spacing * np.arange(n)


def generate_case(seed: int, index: int = 0, matrix: int = 512, max_slices: int = 160,
                  patient_overrides: Optional[Dict[str, Any]] = None,
                  acquisition_overrides: Optional[Dict[str, Any]] = None,
                  variation: Union[str, Variation] = "standard", centre_level: str = "L3") -> PhantomCase:
    """Case `index` of the series drawn from `seed`; the same arguments give the same voxels.
    `variation` ("standard", "wide", "stress": variation.py) widens the draws; overrides still win.
    A scan cut to `max_slices` keeps `centre_level` (default L3) well inside."""
    rng = np.random.default_rng([seed, index])
    extra_rng = variation_rng(seed, index)
    drawn = sample_variation(extra_rng, variation)
    patient = replace(vary_patient(extra_rng, sample_patient(rng), drawn), **(patient_overrides or {}))
    acquisition = replace(vary_acquisition(extra_rng, sample_acquisition(rng, patient), patient, drawn),
                          **(acquisition_overrides or {}))
    size = patient.height_m / 1.70
    spine = Spine(size, 1.0 if patient.sex == "M" else 0.92, float(rng.uniform(0.85, 1.15)), lambda z: 0.0)
    torso = Torso(rng, patient, spine, drawn.fascia_gap_mm)
    spine.body_y_mm = torso.spine_y
    viscera = Viscera(rng, patient, torso, spine)
    skeleton = Skeleton(rng, patient, torso, spine)
    skeleton.arm_pose = drawn.arm_pose

    top, bottom = _z_range(rng, acquisition.coverage, spine, torso)
    z_slices = _slice_positions(rng, top, bottom, acquisition.slice_spacing_mm, max_slices,
                                spine.by_name[centre_level].z_mid)
    imat = IntramuscularFat(rng, patient, (float(z_slices[0]) - 10, float(z_slices[-1]) + 10))

    # field of view: fit the widest section (and the arms), as a radiographer would
    lumbar = [spine.by_name[f"L{i}"].z_mid for i in range(1, 6)]
    torso.table_y = max(torso.back_y(z) for z in lumbar) + float(rng.uniform(0.5, 6.0)) + drawn.table_gap_mm
    probe = np.linspace(z_slices[0], z_slices[-1], 9)
    half_width, front, back = np.max([torso.extent(z) for z in probe], axis=0)
    arms = 2.2 * skeleton.arm_r + max(skeleton.arm_gap, 0) if skeleton.arms_down else 0.0
    fov = (max(2 * (half_width + arms), front + back) + 30.0) * drawn.fov_fraction  # < 1: cuts the body
    scale = 512.0 / matrix
    smallest = (0.6 if drawn.fov_fraction >= 1.0 else 0.4) * scale
    spacing_xy = round(float(np.clip(fov / matrix * rng.uniform(1.0, 1.1), smallest, 1.0 * scale)), 4)
    x0 = rng.uniform(-12, 12) + drawn.x_shift_mm - spacing_xy * (matrix - 1) / 2
    y0 = (back - front) / 2 + 10.0 + rng.uniform(-10, 10) - spacing_xy * (matrix - 1) / 2
    xs = x0 + spacing_xy * np.arange(matrix)
    ys = y0 + spacing_xy * np.arange(matrix)
    table_y = torso.table_y + 0.5

    xg, yg = xs[:, None], ys[None, :]
    rho = np.hypot(xg, yg).astype(np.float32)
    phi_bin = np.rint(np.degrees(np.arctan2(np.abs(xg), -yg)) * 2).astype(np.int32)
    phi_index = phi_bin + PHI_BINS * (xg >= 0)

    renderer = Renderer(rng, patient, acquisition, (matrix, matrix), (spacing_xy, spacing_xy))
    painter = None
    if drawn.mode != "standard":
        painter = VariationPainter(extra_rng, drawn, spine, torso, float(z_slices[0] + z_slices[-1]) / 2)
        for tissue, value in tissue_hu_extras(extra_rng, drawn).items():
            renderer.hu[tissue] = value
    thickness = acquisition.slice_thickness_mm
    offsets = [0.0] if thickness < 2.5 else list(np.linspace(-thickness / 3, thickness / 3, SUB_SLICES_THICK))
    centre = len(offsets) // 2
    hu = np.empty((matrix, matrix, len(z_slices)), np.float32)
    anatomy = np.empty((matrix, matrix, len(z_slices)), np.uint8)

    def paint(z: float) -> Canvas:
        canvas = Canvas(xs, ys, z)
        sec = torso.section(canvas, rho, phi_index)
        spine.paint(canvas, patient.osteoporosis)
        torso.paint_posterior_muscles(canvas, sec, imat)
        skeleton.paint_pelvis(canvas, sec)
        viscera.paint(canvas, sec)
        skeleton.paint_ribs(canvas, sec, phi_index)
        skeleton.paint_arms(canvas, sec)
        torso.relabel_deep_fat(canvas, sec, phi_index)
        if painter is not None:
            painter.paint_before_warp(canvas, sec)
            painter.warp(canvas)
        skeleton.paint_table(canvas, table_y)  # after the warp: the table is rigid
        return canvas

    for k, z in enumerate(z_slices):
        acc = None
        for j, dz in enumerate(offsets):
            canvas = paint(float(z + dz))
            slice_hu = renderer.slice_hu(canvas.tissue)
            streaks = painter.streaks(canvas) if painter is not None else None
            if streaks is not None:
                slice_hu += streaks
            acc = slice_hu if acc is None else acc + slice_hu
            if j == centre:
                anatomy[:, :, k] = canvas.anatomy
        hu[:, :, k] = acc / len(offsets)

    z_world0 = round(float(rng.uniform(-700.0, -300.0)), 1)
    return PhantomCase(
        case_id=f"ph{seed:05d}_{index:03d}",
        seed=seed,
        index=index,
        hu=renderer.finish(hu),
        anatomy=anatomy,
        spacing_mm=(spacing_xy, spacing_xy, acquisition.slice_spacing_mm),
        origin_lps_mm=(float(x0), float(y0), float(z_world0 + z_slices[0])),
        z_anatomical_mm=z_slices,
        patient=patient,
        acquisition=acquisition,
        spine=spine,
        variation=drawn,
    )

