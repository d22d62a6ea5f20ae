"""Organs, bowel and vessels inside the cavity, plus lungs, diaphragm and heart above it.

Everything here paints only into fat (or into earlier organs where they really overlap), so the
cavity outline from the torso clips the organs and nothing spills into muscle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from .canvas import Canvas, Ellipse
from .labels import Anatomy, Tissue
from .patient import Patient
from .solids import Ellipsoid, Tube, polyline, random_walk
from .spine import Spine
from .torso import Section, Torso

VISCERAL = (Anatomy.VISCERAL_FAT,)
BOWEL_CONTENTS = ("fluid", "gas", "feces", "air_fluid", "contrast")


@dataclass(frozen=True)
class GasCap:
    """Clip a 2D shape to the part above (anterior to) a horizontal line: gas over fluid."""

    shape: Ellipse
    y_max: float

    def extent_mm(self):
        x0, x1, y0, y1 = self.shape.extent_mm()
        return x0, x1, y0, min(y1, self.y_max)

    def inside(self, x, y):
        return self.shape.inside(x, y) & (y < self.y_max)

    def shrunk(self, by_mm):
        return GasCap(self.shape.shrunk(by_mm), self.y_max)


@dataclass(frozen=True)
class Loop:
    tube: Tube
    content: str
    anatomy: Anatomy
    level_frac: float


class Viscera:
    def __init__(self, rng: np.random.Generator, patient: Patient, torso: Torso, spine: Spine):
        self.torso, self.spine = torso, spine
        s = torso.size
        lv = spine.by_name
        z_l3 = lv["L3"].z_mid
        cx, ca = torso.cavity_half_width(z_l3), torso.cavity_front(z_l3)
        self.cx, self.ca = cx, ca
        spine_y = torso.spine_y(z_l3)
        # diaphragm dome: right side higher; posterior recesses reach down to about L1
        self.z_dome = lv["T10"].z_top + rng.uniform(-12.0, 10.0)
        self.dome_drop = self.z_dome - (lv["L1"].z_top + rng.uniform(-10.0, 8.0))
        self.dome_reach = float(np.hypot(0.85 * cx, spine_y + 0.2 * ca))
        z_liver_bottom = rng.uniform(lv["L3"].z_mid, lv["L1"].z_mid)
        zc = 0.5 * (self.z_dome + 10 + z_liver_bottom)
        self.liver = Ellipsoid(-0.4 * cx, -0.05 * ca, zc, 0.85 * cx, 1.0 * ca + spine_y,
                               0.5 * (self.z_dome + 10 - z_liver_bottom) + 12, drift_x=0.25)
        self.gallbladder = Ellipsoid(-0.42 * cx, -0.55 * ca, z_liver_bottom + 35, 14 * s, 14 * s, 32 * s,
                                     angle_rad=0.4) if rng.random() < 0.85 else None
        self.spleen = Ellipsoid(0.72 * cx, 0.3 * spine_y + 0.1 * ca, lv["T11"].z_bottom + rng.uniform(-10, 10),
                                22 * s, 48 * s, 50 * s * rng.uniform(0.8, 1.3), angle_rad=-0.7)
        self.stomach = Ellipsoid(0.35 * cx, -0.35 * ca, lv["T12"].z_mid + rng.uniform(-5, 20),
                                 48 * s, 40 * s, 60 * s, angle_rad=0.5, drift_x=-0.25)
        self.stomach_gas = float(rng.uniform(0.0, 0.6))
        self.kidneys = []
        for side, z_k in ((1.0, lv["L1"].z_mid - rng.uniform(0, 10)), (-1.0, lv["L1"].z_mid - rng.uniform(12, 28))):
            x = side * (lv["L2"].width / 2 + 45 * s)
            self.kidneys.append((Ellipsoid(x, spine_y + 2, z_k, 30 * s, 22 * s, 55 * s, angle_rad=-0.55 * side,
                                           drift_x=-0.12 * side, drift_y=0.12),
                                 side))
        self.aorta_r = float(np.clip((10.0 + 0.06 * (patient.age_years - 50)) * s * rng.uniform(0.9, 1.15), 8.0, 16.0))
        self.z_bifurcation = lv["L4"].z_mid + rng.uniform(-10, 10)
        self.loops = self._bowel(rng, cx, ca, spine_y)
        self.oral_contrast = rng.random() < 0.25
        self.bladder_fill = float(rng.uniform(0.4, 1.1))

    def _bowel(self, rng: np.random.Generator, cx: float, ca: float, spine_y: float) -> List[Loop]:
        t, lv = self.torso, self.spine.by_name
        j = lambda v: v * rng.uniform(0.85, 1.15)  # noqa: E731
        colon_path = [
            (-0.6 * cx, -0.15 * ca, t.z_l5 - 15), (-0.72 * cx, 0.1 * ca, t.z_l3),
            (-0.7 * cx, 0.0, t.z_l1 - 10), (-0.45 * cx, -0.5 * ca, t.z_l1 - 15),
            (0.0, -0.72 * ca, j(t.z_l3 + 10) - 10), (0.5 * cx, -0.45 * ca, lv["T12"].z_mid),
            (0.72 * cx, 0.05 * ca, lv["L1"].z_mid), (0.75 * cx, 0.12 * ca, t.z_l3),
            (0.68 * cx, 0.0, t.z_l5), (0.25 * cx, -0.35 * ca, t.z_hip + 10), (0.0, spine_y - 5, t.z_pubis),
        ]
        colon_r = float(rng.uniform(15.0, 24.0))
        loops = [Loop(Tube(polyline(colon_path, 14.0, rng, 6.0), colon_r, 2.5),
                      str(rng.choice(["feces", "feces", "gas", "air_fluid"])), Anatomy.COLON,
                      float(rng.uniform(-0.3, 0.4)))]
        for _ in range(int(rng.integers(10, 20))):
            start = (rng.uniform(-0.5, 0.5) * cx, rng.uniform(-0.8, 0.0) * ca, rng.uniform(t.z_hip, t.z_l1))
            pts = random_walk(start, int(rng.integers(6, 14)), 18.0,
                              (-0.65 * cx, -0.95 * ca, t.z_pubis + 10), (0.65 * cx, spine_y - 15, t.z_l1 + 10), rng)
            content = str(rng.choice(BOWEL_CONTENTS, p=[0.45, 0.15, 0.05, 0.2, 0.15]))
            loops.append(Loop(Tube(pts, float(rng.uniform(9.0, 15.0)), 2.0), content, Anatomy.SMALL_BOWEL,
                              float(rng.uniform(-0.4, 0.4))))
        return loops

    # ---- painting -----------------------------------------------------------------------------
    def diaphragm_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r2 = ((x * 0.9) ** 2 + ((y + 0.15 * self.ca) * 1.0) ** 2) / self.dome_reach ** 2
        right_higher = np.where(x < 0, 12.0, 0.0)
        return self.z_dome + right_higher - self.dome_drop * r2

    def paint(self, canvas: Canvas, sec: Section) -> None:
        z = canvas.z
        box = canvas.bbox(-sec.half_width, sec.half_width, -sec.front, sec.back)
        if box is None:
            return
        xs, ys = canvas.x[box[0]], canvas.y[:, box[1]]
        cavity = sec.cavity[box] & (canvas.anatomy[box] == Anatomy.VISCERAL_FAT)
        dz = z - self.diaphragm_z(xs, ys)
        thorax = cavity & (dz > 3.5)
        if thorax.any():
            self._paint_thorax(canvas, box, thorax, xs, ys)
        muscle = cavity & (np.abs(dz) <= 3.5)
        canvas.paint_mask(box, muscle, Tissue.ORGAN_MUSCLE, Anatomy.DIAPHRAGM)
        self._paint_solid_organs(canvas, box, cavity & (dz < -3.5))
        self._paint_vessels(canvas, sec)
        self._paint_bowel(canvas)
        self._paint_bladder(canvas)

    def _paint_thorax(self, canvas: Canvas, box, thorax: np.ndarray, xs, ys) -> None:
        mediastinum = (np.abs(xs - 10.0) < 28.0) & (ys < self.torso.spine_y(canvas.z))
        canvas.paint_mask(box, thorax & ~mediastinum, Tissue.LUNG, Anatomy.LUNG)
        heart = Ellipsoid(25.0, -0.45 * self.ca, self.z_dome + 45, 62 * self.torso.size, 48 * self.torso.size,
                          60 * self.torso.size, angle_rad=-0.5).at(canvas.z)
        if heart is not None:
            canvas.paint(heart, Tissue.MYOCARDIUM, Anatomy.HEART, (Anatomy.VISCERAL_FAT, Anatomy.LUNG))
            canvas.paint(heart.shrunk(9.0), Tissue.VEIN, Anatomy.HEART, (Anatomy.HEART,))

    def _paint_solid_organs(self, canvas: Canvas, box, abdomen: np.ndarray) -> None:
        z = canvas.z
        where = np.zeros(canvas.anatomy.shape, bool)
        where[box] = abdomen
        for kidney, side in self.kidneys:
            k = kidney.at(z)
            if k is None:
                continue
            canvas.paint(k, Tissue.KIDNEY, Anatomy.KIDNEY, VISCERAL + (Anatomy.LIVER, Anatomy.SPLEEN))
            # renal sinus: fat and collecting system open towards the hilum (anteromedial)
            sinus = Ellipse(k.cx - side * 0.35 * k.a, k.cy - 0.35 * k.b, 0.5 * k.a, 0.45 * k.b, k.angle_rad)
            canvas.paint(sinus, Tissue.FAT, Anatomy.KIDNEY, (Anatomy.KIDNEY,))
            canvas.paint(sinus.shrunk(0.25 * sinus.a), Tissue.URINE, Anatomy.KIDNEY, (Anatomy.KIDNEY,))
        spleen = self.spleen.at(z)
        if spleen is not None:
            canvas.paint(spleen, Tissue.SPLEEN, Anatomy.SPLEEN, VISCERAL, where)
        stomach = self.stomach.at(z)
        if stomach is not None:
            canvas.paint(stomach, Tissue.BOWEL_WALL, Anatomy.STOMACH, VISCERAL, where)
            inner = stomach.shrunk(4.0)
            canvas.paint(inner, Tissue.FLUID, Anatomy.STOMACH, (Anatomy.STOMACH,))
            level = inner.cy - inner.b + 2 * inner.b * self.stomach_gas
            canvas.paint(GasCap(inner, level), Tissue.GAS, Anatomy.STOMACH, (Anatomy.STOMACH,))
        liver = self.liver.at(z)
        if liver is not None:
            canvas.paint(liver, Tissue.LIVER, Anatomy.LIVER, VISCERAL, where)
        if self.gallbladder is not None and (gb := self.gallbladder.at(z)) is not None:
            canvas.paint(gb, Tissue.BILE, Anatomy.GALLBLADDER, (Anatomy.VISCERAL_FAT, Anatomy.LIVER), where)

    def _paint_vessels(self, canvas: Canvas, sec: Section) -> None:
        z, s = canvas.z, self.torso.size
        level = self.spine.nearest(z)
        front = sec.spine_y - level.depth / 2
        into = (Anatomy.VISCERAL_FAT, Anatomy.LIVER, Anatomy.DIAPHRAGM)
        thoracic = float(np.clip((z - self.spine.by_name["T12"].z_mid) / 60.0, 0.0, 1.0))
        r = self.aorta_r
        if z >= self.z_bifurcation:
            ax = 12.0 * s + thoracic * (level.width / 2 + 2)
            ay = front - r - 2.0 + thoracic * (r + 6)
            crus = float(np.clip(1 - abs(z - self.spine.by_name["L1"].z_top) / 35.0, 0.0, 1.0))
            if crus > 0 and thoracic < 0.9:
                canvas.paint(Ellipse(ax, ay + 1.5, r + 2 + 4 * crus, r + 1 + 3 * crus), Tissue.ORGAN_MUSCLE,
                             Anatomy.DIAPHRAGM, into)
            canvas.paint(Ellipse(ax, ay, r, r), Tissue.ARTERY, Anatomy.AORTA, into + (Anatomy.DIAPHRAGM,))
        else:
            spread = (self.z_bifurcation - z) * 0.45
            for side in (-1.0, 1.0):
                canvas.paint(Ellipse(side * spread + 4, front - 8 - 0.2 * spread, 0.6 * r, 0.6 * r),
                             Tissue.ARTERY, Anatomy.AORTA, into)
        ivc_z = self.spine.by_name["L5"].z_mid
        vx = -(level.width / 2 + 2) * (1 - 0.3 * thoracic)
        if z >= ivc_z:
            canvas.paint(Ellipse(vx, front - 11, 13 * s, 8.5 * s), Tissue.VEIN, Anatomy.IVC, into)
        else:
            spread = (ivc_z - z) * 0.45
            for side in (-1.0, 1.0):
                canvas.paint(Ellipse(side * spread - 6, front - 2, 7 * s, 6 * s), Tissue.VEIN, Anatomy.IVC, into)

    def _paint_bowel(self, canvas: Canvas) -> None:
        z = canvas.z
        into = (Anatomy.VISCERAL_FAT, Anatomy.SMALL_BOWEL, Anatomy.COLON)
        for loop in self.loops:
            for sec in loop.tube.sections(z):
                canvas.paint(sec, Tissue.BOWEL_WALL, loop.anatomy, into)
        for loop in self.loops:
            inner_r = loop.tube.radius - loop.tube.wall_mm
            content = {"fluid": Tissue.FLUID, "gas": Tissue.GAS, "feces": Tissue.FECES,
                       "air_fluid": Tissue.FLUID, "contrast": Tissue.ORAL_CONTRAST}[loop.content]
            if content == Tissue.ORAL_CONTRAST and not self.oral_contrast:
                content = Tissue.FLUID
            for sec in loop.tube.sections(z, inner_r):
                canvas.paint(sec, content, loop.anatomy, (loop.anatomy,))
            if loop.content in ("air_fluid", "feces"):
                for sec in loop.tube.sections(z, inner_r, level_frac=loop.level_frac + 0.4):
                    canvas.paint(sec, Tissue.GAS, loop.anatomy, (loop.anatomy,))

    def _paint_bladder(self, canvas: Canvas) -> None:
        t = self.torso
        b = Ellipsoid(0.0, -0.35 * t.cavity_front(t.z_pubis), t.z_pubis + 30, 45 * self.bladder_fill * t.size,
                      35 * self.bladder_fill * t.size, 38 * self.bladder_fill * t.size).at(canvas.z)
        if b is not None:
            canvas.paint(b, Tissue.BOWEL_WALL, Anatomy.BLADDER, VISCERAL + (Anatomy.SMALL_BOWEL, Anatomy.COLON))
            canvas.paint(b.shrunk(3.0), Tissue.URINE, Anatomy.BLADDER, (Anatomy.BLADDER,))
