"""Named hard subgroups: the minority of scans a muscle model trained on standard draws is likely
to get wrong, for benchmarks where such scans are rare (benchmarks/active_learning_rare.py).

A subgroup is forced onto the standard draw of a seed and index (patient and acquisition overrides,
a `forced` variation), so everything else about the scan is an ordinary draw; `holds` tells whether
a case is in the subgroup. The same tests keep ordinary scans out of every subgroup: a standard
draw that happens to be obese with arms down, or has 5 mm slices, is not counted as ordinary, so
"rare" really means rare. Every scan is an abdominal scan (the coverage where L3 is read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Tuple

from .generate import PhantomCase, generate_case
from .variation import FORCED, Variation

ABDOMEN = {"coverage": "abdomen"}
RARE_SEED_OFFSET = 50_000  # rare scans come from their own seed: their case ids never meet the ordinary ones'
OBESE_FAT_MM = 45.0  # anterior subcutaneous fat at L3; the standard draw's median is about 25 mm
FATTY_MUSCLE_HU = 20.0  # lean-muscle attenuation below which muscle counts as fatty (standard minimum 12)


@dataclass(frozen=True)
class Subgroup:
    name: str
    holds: Callable[[PhantomCase], bool]
    patient: Dict[str, Any] = field(default_factory=dict)  # overrides of the standard patient draw
    acquisition: Dict[str, Any] = field(default_factory=dict)  # overrides of the standard acquisition
    variation: Variation = Variation()

    def generate(self, seed: int, index: int, matrix: int, max_slices: int) -> PhantomCase:
        return generate_case(seed, index, matrix=matrix, max_slices=max_slices, patient_overrides=self.patient,
                             acquisition_overrides={**ABDOMEN, **self.acquisition}, variation=self.variation)


RARE = (
    # obese (BMI about 30-50 over the drawn heights) with the arms at the sides, in the field of view
    Subgroup("obese_arms_down", lambda c: c.patient.arms == "down" and c.patient.subcutaneous_fat_mm >= OBESE_FAT_MM,
             patient={"arms": "down", "weight_kg": 110.0, "subcutaneous_fat_mm": 60.0, "visceral_fat_scale": 2.5}),
    # free fluid rimming the cavity, muscle-like HU next to the abdominal wall
    Subgroup("ascites", lambda c: c.variation.ascites_mm > 0, variation=Variation(mode=FORCED, ascites_mm=18.0)),
    # 5 mm slices: partial volume blurs every boundary along z
    Subgroup("thick_slices", lambda c: c.acquisition.slice_thickness_mm >= 5.0,
             acquisition={"slice_spacing_mm": 5.0, "slice_thickness_mm": 5.0}),
    # severe myosteatosis: muscle close to water, marbled with fat
    Subgroup("fatty_muscle", lambda c: c.patient.muscle_hu < FATTY_MUSCLE_HU, patient={"muscle_hu": 8.0}),
)
ORDINARY = Subgroup("ordinary", lambda c: not any(group.holds(c) for group in RARE))


def draw(group: Subgroup, seed: int, count: int, matrix: int, max_slices: int,
         first_index: int = 0) -> Iterator[PhantomCase]:
    """`count` cases of `group` from `seed`, index by index; draws without L3 or outside the group
    are skipped."""
    index, found = first_index, 0
    while found < count:
        case = group.generate(seed, index, matrix, max_slices)
        index += 1
        if case.l3_mid_index is not None and group.holds(case):
            found += 1
            yield case


def rare_count(count: int, rare_fraction: float) -> int:
    """Rare scans among `count`: the nearest whole number, at least one when the fraction is not 0."""
    return max(round(count * rare_fraction), 1) if rare_fraction > 0 else 0


def mixed_set(seed: int, count: int, rare_fraction: float, matrix: int, max_slices: int
              ) -> Iterator[Tuple[str, PhantomCase]]:
    """(subgroup name, case) for `count` scans: `rare_count` of them from the RARE subgroups in turn
    (seed + RARE_SEED_OFFSET), the rest ordinary (seed). Generated one at a time: a full-size pool
    does not fit in memory."""
    rare = rare_count(count, rare_fraction)
    for case in draw(ORDINARY, seed, count - rare, matrix, max_slices):
        yield ORDINARY.name, case
    index = 0
    for position in range(rare):
        group = RARE[position % len(RARE)]
        case = next(draw(group, seed + RARE_SEED_OFFSET, 1, matrix, max_slices, first_index=index))
        index = case.index + 1
        yield group.name, case
