"""Bones outside the spine (ribs, pelvis, hips), the pelvic muscles attached to them, the arms and
the CT table.

Ribs 1-12 leave the spine at their own thoracic level and descend as they wrap forward; the lower
ones stop short (11 at the flank, 12 posterolaterally), so the last rib-bearing level is visible
the way a reader uses it to count down to L3.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .canvas import Canvas, Capsule, Ellipse
from .labels import Anatomy, Tissue
from .patient import Patient
from .profiles import PHI_BINS, PHI_DEG, smoothstep
from .solids import Ellipsoid, SegmentSection
from .spine import Spine
from .torso import FAT_ANATOMY, Section, Torso

RIB_END_DEG = [12, 12, 12, 12, 14, 16, 20, 32, 45, 62, 95, 122]  # anterior end of ribs 1..12
RIB_INTO = FAT_ANATOMY + (Anatomy.CHEST_WALL_MUSCLE, Anatomy.LATERAL_ABDOMINAL_WALL, Anatomy.LATISSIMUS_DORSI,
                          Anatomy.RECTUS_ABDOMINIS, Anatomy.PARASPINAL, Anatomy.LUNG, Anatomy.DIAPHRAGM)


class Skeleton:
    def __init__(self, rng: np.random.Generator, patient: Patient, torso: Torso, spine: Spine):
        self.torso, self.spine = torso, spine
        self.size = torso.size
        self.muscle = torso.muscle
        self.rib_drop = float(rng.uniform(0.38, 0.55)) * self.size  # mm of descent per degree
        self.rib_jitter = rng.uniform(-4.0, 4.0, size=(2, 12))
        self.arms_down = patient.arms == "down"
        self.arm_gap = float(rng.uniform(-3.0, 25.0))
        self.arm_r = (36.0 + 1.1 * (patient.bmi - 22.0) + 6.0 * patient.muscle_scale) * self.size
        self.z_elbow = spine.by_name["L2"].z_mid + rng.uniform(-25, 25)
        self.arm_y = float(rng.uniform(-20, 30))
        self.arm_pose = "standard"  # or "one_down", "on_belly", "against_body" (variation.py)

    def rib_z(self, rib: int, side: int) -> np.ndarray:
        """z of rib `rib` (1-based) per phi bin; NaN where that rib does not reach."""
        attach = self.spine.by_name[f"T{rib}"].z_mid + self.rib_jitter[side, rib - 1]
        z = attach - self.rib_drop * (150.0 - PHI_DEG)
        return np.where((PHI_DEG >= RIB_END_DEG[rib - 1]) & (PHI_DEG <= 152), z, np.nan)

    def paint_ribs(self, canvas: Canvas, sec: Section, phi_index: np.ndarray) -> None:
        z = canvas.z
        half_height, half_thick = 6.0 * self.size, 3.5 * self.size
        best = np.full(2 * PHI_BINS, np.inf, np.float32)
        for side in (0, 1):
            for rib in range(1, 13):
                dzr = np.abs(self.rib_z(rib, side) - z)
                sl = slice(side * PHI_BINS, (side + 1) * PHI_BINS)
                best[sl] = np.fmin(best[sl], dzr / half_height)
                if rib >= 9 and abs(self.spine.by_name[f"T{rib}"].z_mid - z) < 20:
                    self._paint_rib_neck(canvas, sec, rib, side)
        if not np.isfinite(best).any() or best.min() >= 1.0:
            return
        centre = sec.fat_table + 0.45 * np.maximum(sec.wall_table, 2 * half_thick + 2)
        near = np.nonzero((best[phi_index] < 1.0) & (sec.depth > 0))
        idx = phi_index[near]
        u = best[idx] ** 2 + ((sec.depth[near] - centre[idx]) / half_thick) ** 2
        rib = u < 1.0
        allowed = np.zeros(256, bool)
        allowed[list(RIB_INTO)] = True
        rib &= allowed[canvas.anatomy[near]]
        px = (near[0][rib], near[1][rib])
        canvas.tissue[px] = np.where(u[rib] > 0.45, Tissue.CORTICAL_BONE, Tissue.MARROW)
        canvas.anatomy[px] = Anatomy.RIB

    def _paint_rib_neck(self, canvas: Canvas, sec: Section, rib: int, side: int) -> None:
        """Posterior rib from the transverse process to where it enters the wall."""
        lv = self.spine.by_name[f"T{rib}"]
        sign = 1.0 if side else -1.0
        y_canal = self.torso.spine_y(lv.z_mid) + lv.depth / 2 + 9.5
        z0 = lv.z_mid + self.rib_jitter[side, rib - 1]
        phi = np.deg2rad(150.0)
        r_wall = sec.radius_table[side * PHI_BINS + 300] - sec.fat_table[side * PHI_BINS + 300] - 6.0
        p0 = (sign * (lv.width / 2 + lv.transverse_reach), y_canal + 4, z0)
        p1 = (sign * np.sin(phi) * r_wall, -np.cos(phi) * r_wall, z0)
        shape = SegmentSection(p0, p1, 4.5 * self.size, canvas.z)
        canvas.paint(shape, Tissue.CORTICAL_BONE, Anatomy.RIB, RIB_INTO)
        canvas.paint(shape.shrunk(1.5), Tissue.MARROW, Anatomy.RIB, (Anatomy.RIB,))

    def paint_pelvis(self, canvas: Canvas, sec: Section) -> None:
        """Iliac wings from the crest down to the hips, iliacus inside them, gluteals outside."""
        t = self.torso
        z = canvas.z
        if z > t.z_crest or z < t.z_pubis - 40:
            return
        frac = float(np.clip((t.z_crest - z) / (t.z_crest - t.z_hip), 0.0, 1.3))
        s, m = self.size, self.muscle
        y0 = sec.spine_y
        cav = sec.cavity_half_width
        s1 = self.spine.by_name["S1"]
        for side in (-1.0, 1.0):
            post = (side * (s1.width * 1.1 + 6 * frac) * s, y0 + 22 - 12 * frac)
            mid = (side * cav * (0.8 + 0.08 * min(frac, 1.0)), y0 - 8 - 25 * frac)
            ant = (side * cav * (0.78 - 0.12 * frac), y0 - (25 + 70 * frac) * s)
            reach = min(frac / 0.12, 1.0)
            mid = (post[0] + (mid[0] - post[0]) * reach, post[1] + (mid[1] - post[1]) * reach)
            r_bone = (6.5 if frac < 0.08 else 4.5 + 3.0 * max(frac - 0.7, 0.0) * 10) * s
            r_bone = min(r_bone, 14.0 * s)
            pieces = [Capsule(*post, *mid, r_bone)]
            if frac > 0.2:
                pieces.append(Capsule(*mid, *ant, r_bone))
            if frac <= 1.0:
                for bone in pieces:
                    inward = Capsule(bone.x0 - side * (r_bone + 7), bone.y0 - 3, bone.x1 - side * (r_bone + 7),
                                     bone.y1 - 3, (7.0 + 5 * frac) * m)
                    outward = Capsule(bone.x0 + side * (r_bone + 9), bone.y0 + 6, bone.x1 + side * (r_bone + 9),
                                      bone.y1 + 6, (6.0 + 12 * frac) * m)
                    canvas.paint(inward, Tissue.MUSCLE, Anatomy.ILIACUS, FAT_ANATOMY)
                    canvas.paint(outward, Tissue.MUSCLE, Anatomy.GLUTEAL, FAT_ANATOMY)
                    canvas.bone(bone, Anatomy.PELVIC_BONE, 1.5, Tissue.MARROW, FAT_ANATOMY + (
                        Anatomy.ILIACUS, Anatomy.GLUTEAL, Anatomy.PSOAS))
            maximus = 1.0 - smoothstep(z, s1.z_bottom - 20, t.z_l5)
            if maximus > 0.05:
                canvas.paint(Ellipse(side * (40 + 30 * frac) * s, y0 + 40 * s, 38 * m * maximus + 4, 22 * m * maximus + 3,
                                     angle_rad=-0.5 * side), Tissue.MUSCLE, Anatomy.GLUTEAL, FAT_ANATOMY)
            head = Ellipsoid(side * cav * 0.72, y0 - 50 * s, t.z_hip - 15 * s, 24 * s, 24 * s, 24 * s).at(z)
            if head is not None:
                canvas.bone(head, Anatomy.FEMUR, 2.0, Tissue.MARROW)

    def paint_arms(self, canvas: Canvas, sec: Section) -> None:
        """Arms beside the body: muscle of the same density as trunk muscle, never part of SMA."""
        if not self.arms_down or canvas.z < self.torso.z_pubis - 30:
            return
        r = self.arm_r
        below_elbow = canvas.z < self.z_elbow
        if below_elbow:
            r *= 0.82
        for side in ((1.0,) if self.arm_pose == "one_down" else (-1.0, 1.0)):
            cx = side * (sec.half_width + r + self.arm_gap)
            cy = self.arm_y
            if self.arm_pose == "on_belly":  # forearms resting on the belly, touching the skin
                cx, cy = side * 0.45 * sec.half_width, -(sec.front + 0.75 * r)
            elif self.arm_pose == "against_body":  # pressed against the flank
                cx = side * (sec.half_width + 0.8 * r)
            outline = Ellipse(cx, cy, r, r * 1.1)
            fat_mm = 0.25 * r
            canvas.paint(outline, Tissue.SKIN, Anatomy.SKIN, (Anatomy.BACKGROUND,))
            canvas.paint(outline.shrunk(1.8), Tissue.FAT, Anatomy.ARM_OTHER, (Anatomy.SKIN,))
            canvas.paint(outline.shrunk(fat_mm), Tissue.MUSCLE, Anatomy.ARM_MUSCLE, (Anatomy.ARM_OTHER,))
            bones: List[Tuple[float, float, float]] = [(cx, cy, 11.0)] if not below_elbow else [
                (cx - 9, cy - 4, 7.0), (cx + 8, cy + 6, 6.0)]
            for bx, by, br in bones:
                canvas.bone(Ellipse(bx, by, br * self.size, br * self.size), Anatomy.ARM_OTHER, 2.5, Tissue.MARROW,
                            (Anatomy.ARM_MUSCLE,))

    @staticmethod
    def paint_table(canvas: Canvas, top_y: float) -> None:
        """A curved carbon-fibre table with a foam core under the patient."""
        box = canvas.bbox(-260.0, 260.0, top_y, top_y + 60.0)
        if box is None:
            return
        x, y = canvas.x[box[0]], canvas.y[:, box[1]]
        surface = top_y + 0.0006 * x ** 2
        depth = y - surface
        table = (depth >= 0) & (depth < 45.0) & (np.abs(x) < 240.0)
        shell = table & ((depth < 2.5) | (depth > 42.5))
        canvas.paint_mask(box, table & ~shell, Tissue.TABLE_FOAM, Anatomy.BACKGROUND, (Anatomy.BACKGROUND,))
        canvas.paint_mask(box, shell, Tissue.TABLE_SHELL, Anatomy.BACKGROUND, (Anatomy.BACKGROUND,))
