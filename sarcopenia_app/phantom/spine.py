"""The vertebral column: where each level sits along z, and how a vertebra looks in one slice.

z = 0 is the inferior end of the S1 segment (S1 spans 0..30 mm, the rest of the sacrum lies below); levels stack upwards with disc gaps. Dimensions are adult
averages (mm) scaled per patient, so the L3 body is about 28 mm tall and 48 mm wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .canvas import Canvas, Capsule, Ellipse
from .labels import Anatomy, Tissue

LEVEL_NAMES: Tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"])

# body height, disc height *below* the level, body width, body depth, transverse process reach
# beyond the body edge (mm, for a 1.70 m adult)
_BODY_HEIGHT = dict(zip(LEVEL_NAMES, [15, 16, 17, 17.5, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 28, 27, 30]))
_DISC_BELOW = dict(zip(LEVEL_NAMES, [4, 4.5, 4.5, 5, 5, 5, 5.5, 5.5, 6, 6, 7, 8, 9, 10, 11, 12, 11, 0]))
_WIDTH = dict(zip(LEVEL_NAMES, [28, 29, 30, 31, 32, 33, 34, 35, 37, 39, 40, 42, 44, 46, 48, 50, 52, 50]))
_DEPTH = dict(zip(LEVEL_NAMES, [16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 30, 31, 33, 34, 34, 30]))
_TRANSVERSE_REACH = dict(zip(LEVEL_NAMES, [12] * 12 + [14, 19, 25, 21, 18, 0]))


def vertebra_label(level: str) -> int:
    return int(Anatomy.VERTEBRA_BASE) + LEVEL_NAMES.index(level)


@dataclass(frozen=True)
class Level:
    name: str
    z_bottom: float
    z_top: float
    width: float
    depth: float
    transverse_reach: float

    @property
    def z_mid(self) -> float:
        return 0.5 * (self.z_bottom + self.z_top)

    @property
    def lumbar(self) -> bool:
        return self.name.startswith("L")


class Spine:
    """Level geometry of one patient, plus the AP position of the column along z."""

    SACRUM_LENGTH_MM = 105.0

    def __init__(self, size_scale: float, width_scale: float, disc_scale: float,
                 body_y_mm: "callable"):
        self.levels: List[Level] = []
        z = 0.0
        for name in reversed(LEVEL_NAMES):
            disc = _DISC_BELOW[name] * disc_scale * size_scale
            z_bottom = z + disc if name != "S1" else 0.0
            height = _BODY_HEIGHT[name] * size_scale
            self.levels.append(Level(name, z_bottom, z_bottom + height,
                                     _WIDTH[name] * size_scale * width_scale,
                                     _DEPTH[name] * size_scale,
                                     _TRANSVERSE_REACH[name] * size_scale))
            z = z_bottom + height
        self.levels.reverse()
        self.by_name: Dict[str, Level] = {lv.name: lv for lv in self.levels}
        self.body_y_mm = body_y_mm
        self.sacrum_bottom = -self.SACRUM_LENGTH_MM * size_scale

    def level_at(self, z: float) -> Tuple[Optional[Level], Optional[Level]]:
        """(level whose body contains z, or None; level just above when z is in a disc)."""
        for upper, lower in zip(self.levels, self.levels[1:]):
            if lower.z_top <= z < upper.z_bottom:
                return None, upper
        for lv in self.levels:
            if lv.z_bottom <= z <= lv.z_top:
                return lv, None
        return None, None

    def nearest(self, z: float) -> Level:
        return min(self.levels, key=lambda lv: abs(lv.z_mid - z))

    def paint(self, canvas: Canvas, osteo: float) -> None:
        """Vertebral body or disc, canal and posterior elements at canvas.z. `osteo` in 0..1
        thins the cortex (old, osteoporotic bone)."""
        z = canvas.z
        if z < self.sacrum_bottom or z > self.levels[0].z_top + 5:
            return
        if z < self.by_name["S1"].z_top:
            self._paint_sacrum(canvas, z)
            return
        body, above = self.level_at(z)
        ref = body or above or self.nearest(z)
        y = self.body_y_mm(z)
        cortex = 1.6 - 0.7 * osteo
        # spinal canal (continuous through discs)
        canal_a, canal_b = (11.0, 8.0) if ref.lumbar else (8.0, 7.5)
        canal_y = y + ref.depth / 2 + canal_b + 1.5
        shape = Ellipse(0.0, y, ref.width / 2, ref.depth / 2, power=2.3)
        if body is not None:
            t = (z - body.z_bottom) / (body.z_top - body.z_bottom)
            waist = 1.0 - 0.06 * np.sin(np.pi * t)
            shape = Ellipse(0.0, y, body.width / 2 * waist, body.depth / 2 * waist, power=2.3)
            endplate = min(z - body.z_bottom, body.z_top - z) < 1.2
            canvas.bone(shape, vertebra_label(body.name), cortex,
                        Tissue.CORTICAL_BONE if endplate else Tissue.CANCELLOUS_BONE)
        else:
            canvas.paint(Ellipse(0.0, y, ref.width / 2 + 1.5, ref.depth / 2 + 1.0, power=2.3),
                         Tissue.DISC, Anatomy.INTERVERTEBRAL_DISC)
        self._paint_posterior(canvas, z, y, canal_y, canal_a, canal_b, cortex)
        canvas.paint(Ellipse(0.0, canal_y, canal_a, canal_b), Tissue.CSF, Anatomy.SPINAL_CANAL)

    def _paint_posterior(self, canvas: Canvas, z: float, y: float, canal_y: float,
                         canal_a: float, canal_b: float, cortex: float) -> None:
        """Pedicles and transverse processes in the upper body half; laminae and the spinous
        process hang lower, into the disc below, as they do in the real column."""
        for lv in self.levels:
            if lv.name == "S1":
                continue
            t = (z - lv.z_bottom) / (lv.z_top - lv.z_bottom)
            label = vertebra_label(lv.name)
            if 0.45 <= t <= 0.92:
                for side in (-1.0, 1.0):
                    px = side * (canal_a + 2.5)
                    canvas.bone(Capsule(px, y + lv.depth / 2 - 2, px, canal_y + 2, 4.0), label, cortex)
                    if lv.transverse_reach > 0:
                        tip = side * (lv.width / 2 + lv.transverse_reach)
                        r_tp = 4.5 if lv.lumbar else 5.5
                        canvas.bone(Capsule(px, canal_y, tip, canal_y + (3 if lv.lumbar else 8), r_tp),
                                    label, cortex, Tissue.MARROW)
            height = lv.z_top - lv.z_bottom
            if lv.z_bottom - 0.3 * height <= z <= lv.z_top - 0.25 * height:
                back = canal_y + canal_b
                for side in (-1.0, 1.0):
                    canvas.bone(Capsule(side * (canal_a + 2.5), canal_y + 2, 0.0, back + 3, 3.2),
                                label, cortex, Tissue.MARROW)
                spinous_len = 27.0 if lv.lumbar else 32.0
                canvas.bone(Capsule(0.0, back + 3, 0.0, back + spinous_len, 3.8), label, cortex,
                            Tissue.MARROW)

    def _paint_sacrum(self, canvas: Canvas, z: float) -> None:
        s1 = self.by_name["S1"]
        depth_frac = (s1.z_top - z) / (s1.z_top - self.sacrum_bottom)  # 0 at S1 top, 1 at the tip
        y = self.body_y_mm(z)
        label = vertebra_label("S1") if z >= s1.z_bottom else int(Anatomy.PELVIC_BONE)
        narrow = 1.0 - 0.75 * depth_frac
        ala = Capsule(-s1.width * 1.15 * narrow, y + 8, s1.width * 1.15 * narrow, y + 8,
                      max(14.0 * (1 - 0.6 * depth_frac), 5.0))
        canvas.bone(ala, label, 1.4)
        if depth_frac < 0.5:
            canvas.bone(Ellipse(0.0, y, s1.width / 2 * narrow, s1.depth / 2 * narrow, power=2.3), label, 1.4)
        canvas.paint(Ellipse(0.0, y + s1.depth / 2 * narrow + 3, 8 * narrow + 2, 4 * narrow + 1.5),
                     Tissue.CSF, Anatomy.SPINAL_CANAL)
