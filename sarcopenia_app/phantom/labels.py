"""Codes of the phantom's two per-voxel maps.

`Anatomy` is the ground truth written to disk (what a structure *is*); `Tissue` only decides the
voxel's HU (what it *looks like*). They are separate because look and identity overlap on purpose:
the diaphragm crura and arm muscle look like trunk muscle but are not part of L3 SMA.
"""

from __future__ import annotations

from enum import IntEnum


class Tissue(IntEnum):
    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3
    SKIN = 4
    CORTICAL_BONE = 5
    CANCELLOUS_BONE = 6
    MARROW = 7
    DISC = 8
    CSF = 9
    ARTERY = 10
    VEIN = 11
    LIVER = 12
    SPLEEN = 13
    KIDNEY = 14
    URINE = 15
    BOWEL_WALL = 16
    GAS = 17
    FLUID = 18
    FECES = 19
    ORAL_CONTRAST = 20
    TABLE_FOAM = 21
    TABLE_SHELL = 22
    MYOCARDIUM = 23
    BILE = 24
    ORGAN_MUSCLE = 25  # diaphragm, crura: muscle density, own perfusion
    OEDEMA = 26  # stranded / oedematous fat (variation.py): denser than fat, still fat
    METAL = 27  # implants (variation.py)


class Anatomy(IntEnum):
    BACKGROUND = 0
    SKIN = 1
    SUBCUTANEOUS_FAT = 2
    VISCERAL_FAT = 3
    INTERMUSCULAR_FAT = 4
    # trunk skeletal muscle (the L3 SMA muscles and their neighbours above and below)
    PSOAS = 10
    PARASPINAL = 11
    QUADRATUS_LUMBORUM = 12
    RECTUS_ABDOMINIS = 13
    LATERAL_ABDOMINAL_WALL = 14
    LATISSIMUS_DORSI = 15
    CHEST_WALL_MUSCLE = 16
    ILIACUS = 17
    GLUTEAL = 18
    # muscle that is never part of SMA
    ARM_MUSCLE = 20
    DIAPHRAGM = 21
    ARM_OTHER = 22
    # organs and vessels
    LIVER = 30
    SPLEEN = 31
    KIDNEY = 32
    STOMACH = 33
    SMALL_BOWEL = 34
    COLON = 35
    BLADDER = 36
    AORTA = 37
    IVC = 38
    LUNG = 39
    HEART = 40
    SPINAL_CANAL = 41
    INTERVERTEBRAL_DISC = 42
    RIB = 43
    PELVIC_BONE = 44
    FEMUR = 45
    GALLBLADDER = 46
    ASCITES = 47  # free fluid in the cavity (variation.py)
    IMPLANT = 48  # metal: screws, rods, prostheses (variation.py)
    # vertebrae: VERTEBRA_BASE + index in spine.LEVEL_NAMES (T1 .. L5, S1 = sacrum)
    VERTEBRA_BASE = 50


TRUNK_MUSCLES: tuple[Anatomy, ...] = (
    Anatomy.PSOAS,
    Anatomy.PARASPINAL,
    Anatomy.QUADRATUS_LUMBORUM,
    Anatomy.RECTUS_ABDOMINIS,
    Anatomy.LATERAL_ABDOMINAL_WALL,
    Anatomy.LATISSIMUS_DORSI,
    Anatomy.CHEST_WALL_MUSCLE,
    Anatomy.ILIACUS,
    Anatomy.GLUTEAL,
)
