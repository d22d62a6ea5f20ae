"""A hand-built axial abdominal CT slice whose tissues are known pixel by pixel.

Geometry is given in mm (rows = anterior -> posterior, columns = right -> left) and
rasterised at any pixel spacing, so tests can vary the grid without moving anatomy.
Later shapes are painted over earlier ones.
"""

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

AIR_HU = -1000.0
FAT_HU = -100.0
SKIN_HU = 40.0
MUSCLE_HU = 50.0
ORGAN_HU = 55.0
KIDNEY_HU = 35.0
AORTA_HU = 40.0  # blood without contrast
MARROW_HU = 120.0  # in the muscle HU range on purpose: must not be labelled
CORTEX_HU = 700.0
TABLE_HU = 300.0

FIELD_OF_VIEW_MM = (300.0, 340.0)
CENTRE_MM = (150.0, 170.0)


@dataclass
class SyntheticSlice:
    hu: np.ndarray
    pixel_spacing_mm: Tuple[float, float]
    truth: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def muscle(self) -> np.ndarray:
        """Every pixel a reader would count as L3 skeletal muscle."""
        return self.truth["muscle_wall"] | self.truth["psoas"] | self.truth["paraspinals"]


def abdomen_slice(
    pixel_spacing_mm: Tuple[float, float] = (1.0, 1.0),
    with_vertebra: bool = True,
    layered_wall: bool = False,
    front_gap_mm: float = 0.0,
) -> SyntheticSlice:
    """Skin, subcutaneous fat, a 10 mm muscle ring, visceral fat with an organ, and
    (optionally) a vertebra with psoas and paraspinal muscles; plus a CT table and an
    arm that are not part of the trunk, a gas-filled bowel loop 3 mm inside the muscle
    ring, a kidney wrapped in fat beside the psoas, an unenhanced aorta against the
    front of the vertebral body, and a 3 mm break in the vertebra's cortex.

    ``layered_wall`` splits the ring into two layers by a 2 mm fat plane;
    ``front_gap_mm`` opens it at the front by a fat-filled gap (like the linea alba),
    so that subcutaneous and visceral fat are connected."""
    shape = tuple(int(round(extent / step)) for extent, step in zip(FIELD_OF_VIEW_MM, pixel_spacing_mm))
    rows_mm, cols_mm = np.indices(shape, dtype=np.float64)
    rows_mm = (rows_mm + 0.5) * pixel_spacing_mm[0]
    cols_mm = (cols_mm + 0.5) * pixel_spacing_mm[1]

    def ellipse(centre_mm: Tuple[float, float], semi_axes_mm: Tuple[float, float]) -> np.ndarray:
        d_rows = (rows_mm - centre_mm[0]) / semi_axes_mm[0]
        d_cols = (cols_mm - centre_mm[1]) / semi_axes_mm[1]
        return d_rows**2 + d_cols**2 <= 1.0

    row0, col0 = CENTRE_MM
    body = ellipse(CENTRE_MM, (100, 125))
    inside_skin = ellipse(CENTRE_MM, (98, 123))
    inside_fat = ellipse(CENTRE_MM, (85, 110))
    cavity = ellipse(CENTRE_MM, (75, 100))
    organ = ellipse((row0 - 30, col0), (20, 20))
    bowel = ellipse((row0 - 58.6, col0 + 25), (11, 11))
    bowel_gas = ellipse((row0 - 58.6, col0 + 25), (8, 8))
    arm = ellipse((row0, 20), (30, 14))
    arm_muscle = ellipse((row0, 20), (24, 9))
    table = (rows_mm >= 262) & (rows_mm <= 270) & (cols_mm >= 30) & (cols_mm <= 310)

    hu = np.full(shape, AIR_HU)
    hu[body] = SKIN_HU
    hu[inside_skin] = FAT_HU
    hu[inside_fat] = MUSCLE_HU
    hu[cavity] = FAT_HU
    hu[organ] = ORGAN_HU
    hu[bowel] = ORGAN_HU
    hu[bowel_gas] = AIR_HU
    fat_plane = ellipse(CENTRE_MM, (81, 106)) & ~ellipse(CENTRE_MM, (79, 104)) if layered_wall else False
    front_gap = (np.abs(cols_mm - col0) <= front_gap_mm / 2) & (rows_mm < row0)
    wall_fat = (fat_plane | front_gap) & inside_fat & ~cavity
    hu[wall_fat] = FAT_HU
    hu[arm] = FAT_HU
    hu[arm_muscle] = MUSCLE_HU
    hu[table] = TABLE_HU
    truth = {
        "skin": body & ~inside_skin,
        "muscle_wall": inside_fat & ~cavity & ~wall_fat,
        "organ": organ,
        "bowel": bowel,
        "arm": arm,
        "table": table,
        "psoas": np.zeros(shape, dtype=bool),
        "paraspinals": np.zeros(shape, dtype=bool),
        "kidney": np.zeros(shape, dtype=bool),
        "aorta": np.zeros(shape, dtype=bool),
        "marrow": np.zeros(shape, dtype=bool),
    }
    if with_vertebra:
        vertebra_centre = (row0 + 40, col0)
        vertebra = ellipse(vertebra_centre, (18, 18))
        marrow = ellipse(vertebra_centre, (15, 15))
        psoas = ellipse((row0 + 30, col0 - 31), (12, 12)) | ellipse((row0 + 30, col0 + 31), (12, 12))
        aorta = ellipse((row0 + 10, col0 - 6), (10, 10))
        paraspinals = ellipse((row0 + 60, col0 - 22), (10, 16)) | ellipse((row0 + 60, col0 + 22), (10, 16))
        kidney = ellipse((row0 + 25, col0 - 72), (13, 13)) | ellipse((row0 + 25, col0 + 72), (13, 13))
        hu[psoas | paraspinals] = MUSCLE_HU
        hu[kidney] = KIDNEY_HU
        hu[aorta] = AORTA_HU
        cortex_break = vertebra & ~marrow & (np.abs(cols_mm - col0) <= 1.5) & (rows_mm < vertebra_centre[0])
        hu[vertebra] = CORTEX_HU
        hu[marrow] = MARROW_HU
        hu[cortex_break] = FAT_HU
        truth.update(
            psoas=psoas & ~vertebra,
            paraspinals=paraspinals & ~vertebra,
            kidney=kidney,
            aorta=aorta,
            marrow=marrow,
        )
    return SyntheticSlice(hu=hu.astype(np.float32), pixel_spacing_mm=pixel_spacing_mm, truth=truth)
