"""Body wall and trunk muscles: outline, skin, subcutaneous fat, the abdominal and chest wall as
thin curved layers, and the posterior muscles placed against the spine.

The outline is a pair of superellipses (round belly, flat back on the table) around (0, 0); the wall
layers are bands at a given depth below the skin, as functions of the angle phi from the anterior
midline (0 = front, 90 = flank, 180 = back), so they bend with the body the way real muscles do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .canvas import Canvas, Ellipse
from .labels import Anatomy, Tissue
from .patient import Patient
from .profiles import PHI_BINS, PHI_DEG, along, smoothstep, window
from .spine import Spine

FAT_ANATOMY = (Anatomy.SUBCUTANEOUS_FAT, Anatomy.VISCERAL_FAT, Anatomy.INTERMUSCULAR_FAT)
FASCIA_GAP_MM = 1.3  # fat plane between wall layers (a Torso may fuse them: variation.py)


@dataclass
class Section:
    """The torso's geometry at one z, shared with the organ painters."""

    z: float
    half_width: float  # A
    front: float  # B_ant
    back: float  # B_post
    spine_y: float  # centre of the vertebral body
    cavity_half_width: float
    cavity_front: float
    wall_end_deg: float  # where the lateral wall meets the posterior muscles
    radius_table: np.ndarray  # body radius (mm) per phi bin, right side then left side
    fat_table: np.ndarray  # subcutaneous fat thickness (mm) per phi bin, same layout
    wall_table: np.ndarray  # total wall muscle thickness (mm) per phi bin, same layout
    depth: np.ndarray  # mm below the skin along the ray from (0, 0), per pixel
    cavity: np.ndarray  # bool, inside the abdominal/thoracic cavity


class Torso:
    def __init__(self, rng: np.random.Generator, patient: Patient, spine: Spine, fascia_gap_mm: float = FASCIA_GAP_MM):
        self.spine = spine
        self.fascia_gap_mm = fascia_gap_mm
        self.size = patient.height_m / 1.70
        male = patient.sex == "M"
        self.muscle = patient.muscle_scale * (1.0 if male else 0.74)
        lv = spine.by_name
        self.z_t10 = lv["T10"].z_mid
        self.z_t12 = lv["T12"].z_mid
        self.z_l1 = lv["L1"].z_mid
        self.z_l3 = lv["L3"].z_mid
        self.z_l5 = lv["L5"].z_mid
        self.z_crest = lv["L4"].z_bottom - rng.uniform(-4.0, 12.0)
        self.z_hip = lv["S1"].z_bottom - 60.0 * self.size
        self.z_pubis = lv["S1"].z_bottom - 100.0 * self.size
        zs = [self.z_pubis, self.z_hip, self.z_l5, self.z_l3, self.z_l1, self.z_t10, lv["T6"].z_mid]
        self._zs = zs
        fat = patient.subcutaneous_fat_mm
        female_hips = 1.0 if male else 1.18
        self.fat_front = [fat * 0.9, fat * 1.0, fat * 1.05, fat, fat * 0.8, fat * 0.55, fat * 0.45]
        self.fat_side = [fat * 0.95 * female_hips, fat * 0.95 * female_hips, fat * 0.85 * female_hips,
                         fat * 0.75, fat * 0.6, fat * 0.45, fat * 0.4]
        fb = 0.45 * fat + 3.0
        self.fat_back = [fb * 1.1, fb * 1.2, fb * 1.05, fb, fb * 0.85, fb * 0.7, fb * 0.6]
        visceral = patient.visceral_fat_scale
        s = self.size
        cx = (92.0 + 16.0 * visceral) * s
        self.cavity_x = [cx * 1.12 * female_hips, cx * 1.14 * female_hips, cx * 1.02, cx, cx * 1.06,
                         cx * 1.08, cx * 1.06]
        ca = (62.0 + 34.0 * visceral) * s
        self.cavity_ant = [ca * 0.75, ca * 0.85, ca * 0.98, ca, ca * 0.98, ca * 0.95, ca * 0.95]
        # anterior surface of the vertebral body sits a little behind the body centre (lordosis
        # brings L3-L4 forward)
        self.spine_front = [8.0 * s, 8.0 * s, 8.0 * s, 4.0 * s, 8.0 * s, 14.0 * s, 18.0 * s]
        self.belly_power = 2.0 - 0.12 * min(max(patient.bmi - 27.0, 0.0) / 8.0, 1.0)
        self.back_power = float(rng.uniform(2.4, 2.9))
        # thickness of the wall layers at L3 (mm), scaled by muscle mass
        m = self.muscle * s
        jitter = lambda: float(rng.uniform(0.85, 1.15))  # noqa: E731
        self.rectus_mm = 11.5 * m * jitter()
        self.rectus_width_mm = 68.0 * s * jitter()
        self.linea_alba_mm = float(rng.uniform(3.0, 9.0)) * (1.0 + 0.5 * min(visceral, 2.0))
        self.oblique_mm = (7.0 * m * jitter(), 8.5 * m * jitter(), 5.5 * m * jitter())
        self.latissimus_mm = 6.0 * m * jitter()
        self.chest_wall_mm = 11.0 * m * jitter()
        self.paraspinal = (32.0 * np.sqrt(m) * jitter(), 1.0 * jitter())  # half-width, depth factor
        self.psoas_cm2 = 10.5 * self.muscle * s * s * jitter()
        self.ql_mm = (24.0 * np.sqrt(m) * jitter(), 9.5 * np.sqrt(m) * jitter())
        self.table_y = float("inf")  # set by the generator: the outline is flattened on the table
        self.shape_harmonics = rng.normal(0.0, 0.018, size=(2, 3)).astype(np.float32)
        self.shape_phases = rng.uniform(0, 2 * np.pi, size=(2, 3)).astype(np.float32)

    # ---- profiles along z -------------------------------------------------------------------
    def _z(self, z: float, values: List[float]) -> float:
        return along(z, self._zs, values)

    def cavity_half_width(self, z: float) -> float:
        return self._z(z, self.cavity_x)

    def cavity_front(self, z: float) -> float:
        return self._z(z, self.cavity_ant)

    def spine_y(self, z: float) -> float:
        level = self.spine.nearest(z)
        y = self._z(z, self.spine_front) + level.depth / 2
        sacrum_top = self.spine.by_name["S1"].z_top
        if z < sacrum_top:  # the sacrum slopes backwards
            y += min(0.3 * (sacrum_top - z), 35.0 * self.size)
        return y

    def back_y(self, z: float) -> float:
        """Skin at the posterior midline: spine + posterior elements + paraspinal cover + fat."""
        level = self.spine.nearest(z)
        if z < self.spine.by_name["S1"].z_top:  # sacral canal, crest and a thin multifidus
            reach = level.depth / 2 + 28.0
        else:
            reach = level.depth / 2 + (16.0 if level.lumbar else 15.0) + 1.5 + (27.0 if level.lumbar else 32.0)
        return self.spine_y(z) + reach + 4.0 + self._z(z, self.fat_back)

    def extent(self, z: float) -> Tuple[float, float, float]:
        """(half width, front, back) of the body outline at z, in mm from (0, 0)."""
        abdominal, chest, lateral = self.muscle_presence(z)
        wall_lat = sum(self.oblique_mm) * lateral + self.chest_wall_mm * chest * (1 - lateral)
        half_width = self.cavity_half_width(z) + wall_lat + self._z(z, self.fat_side) + 2 * self.fascia_gap_mm
        front_wall = max(self.rectus_mm * abdominal, self.chest_wall_mm * chest)
        front = self.cavity_front(z) + front_wall + self._z(z, self.fat_front)
        return half_width, front, min(self.back_y(z), self.table_y)

    def muscle_presence(self, z: float) -> Tuple[float, float, float]:
        """Weights (abdominal wall, chest wall, lateral wall) of which wall exists at z."""
        abdominal = smoothstep(z, self.z_pubis - 10, self.z_pubis + 30) * (1.0 - smoothstep(z, self.z_t10, self.z_t10 + 60))
        chest = smoothstep(z, self.z_t12 - 10, self.z_t10)
        lateral = abdominal * smoothstep(z, self.z_crest - 35, self.z_crest)
        return abdominal, chest, lateral

    # ---- painting -----------------------------------------------------------------------------
    def section(self, canvas: Canvas, rho: np.ndarray, phi_index: np.ndarray) -> Section:
        """Paint skin, fat, wall muscles and the cavity; return the geometry for later painters."""
        z = canvas.z
        f_front, f_side = self._z(z, self.fat_front), self._z(z, self.fat_side)
        f_back = self._z(z, self.fat_back)
        abdominal, chest, lateral = self.muscle_presence(z)
        cav_x, cav_a = self.cavity_half_width(z), self.cavity_front(z)
        half_width, front, back = self.extent(z)
        spine_y = self.spine_y(z)

        phi = np.deg2rad(PHI_DEG)
        radius = np.empty(2 * PHI_BINS, np.float32)
        for side in (0, 1):
            ux, uy = np.sin(phi), -np.cos(phi)
            b = np.where(uy < 0, front, back)
            p = np.where(uy < 0, self.belly_power, self.back_power)
            r = (np.abs(ux / half_width) ** p + np.abs(uy / b) ** p) ** (-1.0 / p)
            harm = sum(self.shape_harmonics[side, k] * np.cos((k + 2) * phi + self.shape_phases[side, k])
                       for k in range(3))
            radius[side * PHI_BINS:(side + 1) * PHI_BINS] = r * (1.0 + harm * (1 - np.abs(np.cos(phi)) ** 8))
        fat = np.tile((f_side + (f_front - f_side) * np.clip(np.cos(phi), 0, 1) ** 1.5
                       + (f_back - f_side) * np.clip(-np.cos(phi), 0, 1) ** 1.5).astype(np.float32), 2)
        depth = radius[phi_index] - rho
        body = depth > 0
        canvas.tissue[body] = Tissue.FAT
        canvas.anatomy[body] = Anatomy.SUBCUTANEOUS_FAT
        skin = body & (depth < 1.8)
        canvas.tissue[skin] = Tissue.SKIN
        canvas.anatomy[skin] = Anatomy.SKIN

        # posterior end of the lateral wall: the flank, just beside quadratus lumborum
        level = self.spine.nearest(z)
        end_x = level.width / 2 + level.transverse_reach + 2.2 * self.ql_mm[0]
        wall_end = float(np.degrees(np.arctan2(end_x, -(spine_y + 10.0))))
        layers = self._layers(z, abdominal, chest, lateral, front, wall_end)
        wall_total = np.zeros(PHI_BINS, np.float32)
        for _, thickness in layers:
            wall_total += np.where(thickness > 0.3, thickness + self.fascia_gap_mm, 0.0)
        wall_total = np.tile(wall_total, 2)

        shell = np.nonzero(body & (depth < (fat + wall_total + 2.0)[phi_index]))
        d = depth[shell]
        idx = phi_index[shell]
        start = fat[idx]
        for anatomy, thickness in layers:
            t = np.tile(thickness, 2)[idx]
            inside = (d > start) & (d < start + t) & (t > 0.3)
            px = (shell[0][inside], shell[1][inside])
            canvas.tissue[px] = Tissue.MUSCLE
            canvas.anatomy[px] = anatomy
            start = start + np.where(t > 0.3, t + self.fascia_gap_mm, 0.0)

        # cavity: below the wall in front and at the flanks, reaching back to the spinal canal
        canal_depth = back - (spine_y + level.depth / 2 + 10.0)
        post = np.clip((PHI_DEG - wall_end) / 25.0, 0.0, 1.0)
        front_depth = (fat[:PHI_BINS] + wall_total[:PHI_BINS] + 1.5)
        cavity_depth = np.tile(front_depth * (1 - post) + canal_depth * post, 2).astype(np.float32)
        cavity = depth > cavity_depth[phi_index]
        canvas.tissue[cavity] = Tissue.FAT
        canvas.anatomy[cavity] = Anatomy.VISCERAL_FAT
        return Section(z, half_width, front, back, spine_y, cav_x, cav_a, wall_end, radius, fat,
                       wall_total, depth, cavity)

    def _layers(self, z: float, abdominal: float, chest: float, lateral: float, front: float,
                wall_end: float) -> List[Tuple[Anatomy, np.ndarray]]:
        """(anatomy, thickness per phi bin) from the skin inwards."""
        phi = PHI_DEG
        zero = np.zeros(PHI_BINS, np.float32)
        lat_scale = along(z, [self.z_l3 - 10, self.z_l3, self.z_t12, self.z_t10 + 80], [0.2, 0.7, 1.0, 1.0])
        latissimus = self.latissimus_mm * lat_scale * window(phi, 105, wall_end + 25, 15)
        alba_deg = np.degrees(self.linea_alba_mm / 2 / front)
        rectus_deg = np.degrees(self.rectus_width_mm / front)
        rectus = self.rectus_mm * abdominal * window(phi, alba_deg + 1.5, rectus_deg, 1.5)
        side_wall = window(phi, rectus_deg + 4, wall_end - 6, 6)
        obliques = [t * lateral * side_wall * (1.0 + 0.25 * np.sin(np.deg2rad(phi))) for t in self.oblique_mm]
        chest_wall = self.chest_wall_mm * chest * (1 - lateral) * window(phi, 3, wall_end, 8)
        layers = [(Anatomy.LATISSIMUS_DORSI, latissimus), (Anatomy.CHEST_WALL_MUSCLE, chest_wall),
                  (Anatomy.RECTUS_ABDOMINIS, rectus)]
        layers += [(Anatomy.LATERAL_ABDOMINAL_WALL, o) for o in obliques]
        return [(a, t.astype(np.float32)) for a, t in layers if t.max() > 0.3] or [(Anatomy.RECTUS_ABDOMINIS, zero)]

    def paint_posterior_muscles(self, canvas: Canvas, sec: Section, imat: "IntramuscularFat") -> None:
        """Paraspinals, quadratus lumborum and psoas, each side, with their fat streaks."""
        z = canvas.z
        level = self.spine.nearest(z)
        lumbar = smoothstep(z, self.z_t12 - 30, self.z_t12 + 20)
        lumbar = 1.0 - lumbar
        half_w, depth_factor = self.paraspinal
        taper = 0.55 + 0.45 * smoothstep(z, self.spine.by_name["S1"].z_bottom - 40, self.z_l5)
        a_ps = half_w * (0.75 + 0.25 * lumbar) * taper
        canal_y = sec.spine_y + level.depth / 2 + 9.5
        into = FAT_ANATOMY
        for side in (-1.0, 1.0):
            cx = side * (a_ps + 5.0)
            y_skin = sec.back * (1 - (abs(cx) / sec.half_width) ** self.back_power) ** (1 / self.back_power)
            f_back = self._z(z, self.fat_back)
            y_top = y_skin - f_back - 2.0
            b_ps = max((y_top - canal_y) / 2, 6.0) * depth_factor
            shape = Ellipse(cx, y_top - b_ps, a_ps, b_ps, angle_rad=-0.18 * side, power=2.4)
            canvas.paint(shape, Tissue.MUSCLE, Anatomy.PARASPINAL, into)
            imat.paint(canvas, shape, side)
            # quadratus lumborum: beside the transverse process tips, T12 .. iliac crest
            ql = smoothstep(z, self.z_crest - 25, self.z_crest + 5) * (1 - smoothstep(z, self.z_t12, self.z_t12 + 25))
            if ql > 0.05:
                qa, qb = self.ql_mm[0] * (0.4 + 0.6 * ql), self.ql_mm[1] * (0.5 + 0.5 * ql)
                qx = side * (level.width / 2 + level.transverse_reach + qa * 0.55)
                shape = Ellipse(qx, canal_y + 2.0 - qb * 0.4, qa, qb, angle_rad=0.55 * side)
                canvas.paint(shape, Tissue.MUSCLE, Anatomy.QUADRATUS_LUMBORUM, into)
                imat.paint(canvas, shape, side)
            self._paint_psoas(canvas, sec, level, side, imat)

    def psoas_area_cm2(self, z: float) -> float:
        lv = self.spine.by_name
        zs = [self.z_pubis, self.z_hip, lv["L5"].z_mid, lv["L4"].z_mid, lv["L3"].z_mid, lv["L2"].z_mid,
              lv["L1"].z_mid, lv["T12"].z_bottom]
        rel = [0.0, 1.5, 1.55, 1.35, 1.0, 0.55, 0.22, 0.0]
        return self.psoas_cm2 * along(z, zs, rel)

    def _paint_psoas(self, canvas: Canvas, sec: Section, level, side: float, imat: "IntramuscularFat") -> None:
        area = self.psoas_area_cm2(canvas.z) * 100.0
        if area < 20.0:
            return
        r = np.sqrt(area / np.pi)
        # below L5 the psoas moves forward and outward to leave the pelvis with iliacus
        pelvic = smoothstep(-canvas.z, -self.z_l5, -self.z_hip)
        cx = side * (level.width / 2 + r * 0.85 + 1.0 + 45.0 * pelvic * self.size)
        cy = sec.spine_y - 0.25 * r - 55.0 * pelvic * self.size
        shape = Ellipse(cx, cy, r * 1.08, r / 1.08, angle_rad=0.5 * side)
        canvas.paint(shape, Tissue.MUSCLE, Anatomy.PSOAS, FAT_ANATOMY)
        imat.paint(canvas, shape, side)

    @staticmethod
    def relabel_deep_fat(canvas: Canvas, sec: Section, phi_index: np.ndarray) -> None:
        """Fat that is not directly under the skin (between muscles) is intermuscular fat."""
        deep = (canvas.anatomy == Anatomy.SUBCUTANEOUS_FAT) & (sec.depth > sec.fat_table[phi_index] + 1.5)
        canvas.anatomy[deep] = Anatomy.INTERMUSCULAR_FAT


class IntramuscularFat:
    """Fat streaks inside muscle, fixed in each muscle's own coordinates so they run through
    neighbouring slices like real marbling. Counted as fat, never as muscle."""

    def __init__(self, rng: np.random.Generator, patient: Patient, z_range: Tuple[float, float]):
        amount = np.clip((50.0 - patient.muscle_hu) / 25.0, 0.05, 1.5) + 0.1 * patient.bmi / 30
        n = int(30 + 160 * amount)
        self.u = rng.uniform(-0.85, 0.85, n).astype(np.float32)
        self.v = rng.uniform(-0.85, 0.85, n).astype(np.float32)
        self.z = rng.uniform(z_range[0], z_range[1], n).astype(np.float32)
        self.half_height = rng.uniform(2.0, 9.0, n).astype(np.float32)
        self.r = rng.uniform(0.8, 2.8, n).astype(np.float32)
        self.side = np.where(rng.random(n) < 0.5, -1.0, 1.0)

    def paint(self, canvas: Canvas, muscle: Ellipse, side: float) -> None:
        # one array decides both which streaks cut this slice and their taper: comparing in float32
        # and tapering in float64 once gave sqrt of a negative number (a NaN ellipse) at a streak's tip
        reach = (self.z.astype(np.float64) - canvas.z) / self.half_height
        sel = np.nonzero((np.abs(reach) < 1.0) & (self.side == side))[0]
        c, s = np.cos(muscle.angle_rad), np.sin(muscle.angle_rad)
        for k in sel:
            du, dv = self.u[k] * muscle.a, self.v[k] * muscle.b
            r = float(self.r[k] * np.sqrt(1.0 - reach[k] ** 2))
            x, y = muscle.cx + c * du - s * dv, muscle.cy + s * du + c * dv
            canvas.paint(Ellipse(x, y, r * 1.6, r * 0.7, angle_rad=muscle.angle_rad),
                         Tissue.FAT, Anatomy.INTERMUSCULAR_FAT,
                         into=(Anatomy.PARASPINAL, Anatomy.PSOAS, Anatomy.QUADRATUS_LUMBORUM))
