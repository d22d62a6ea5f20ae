"""One CT in, the L3 measurements out: the single pipeline behind the CLI, the server and tests.

Order of work: find L3 first (a cheap projection), segment only the slices of the L3 vertebra
(about one second), measure on the chosen slice. Everything a reader needs to trust or reject the
numbers travels with them: confidence, the slice, the cut-off set, the models, and warnings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from monai.data.utils import affine_to_spacing
import torch

from .ct_loader import HeaderInfo, LoadedCT
from .cutoffs import DEFAULT_CUTOFFS, CutoffSet, cutoff_set
from .level.locator import CONVENTIONS, MIN_CONFIDENCE, L3Location, LevelLocator, locate_l3
from .level_measurements import LevelPosition, level_positions, measure_levels, slices_needed
from .measurements import (MUSCLE_HU, SliceMeasurement, average, contrast_suspected, measure_slice, metal_suspected,
                           refine_border, smi_cm2_m2)
from .segment import MuscleModel, load_model, predict_mask

THICK_SLICE_MM = 5.0
REGIONS = ("l3", "all")
LEVEL_CHOICES = ("l3", "all")  # L3 only, or every level T12..L5 in view plus the L1-L5 volume


class InvalidRequestError(ValueError):
    """A measurement option or patient value that cannot be right; the message says which."""


@dataclass(frozen=True)
class Subject:
    sex: Optional[str] = None
    height_m: Optional[float] = None
    weight_kg: Optional[float] = None

    @property
    def bmi(self) -> Optional[float]:
        return self.weight_kg / self.height_m ** 2 if self.height_m and self.weight_kg else None


def subject_for(header: HeaderInfo, sex: Optional[str] = None, height_m: Optional[float] = None,
                weight_kg: Optional[float] = None) -> Subject:
    """What the user typed wins over what the DICOM header recorded."""
    if sex is not None and sex.upper() not in ("M", "F"):
        raise InvalidRequestError(f"sex must be M or F, not {sex!r}")
    for name, value, low, high in (("height_m", height_m, 0.5, 2.6), ("weight_kg", weight_kg, 20, 400)):
        if value is not None and not low <= value <= high:
            raise InvalidRequestError(f"{name} = {value} is outside {low}..{high}: check the units")
    return Subject(sex.upper() if sex else header.sex, height_m or header.height_m, weight_kg or header.weight_kg)


@dataclass(frozen=True)
class MeasureOptions:
    muscle_hu: Tuple[float, float] = MUSCLE_HU
    cutoffs: str = DEFAULT_CUTOFFS
    convention: str = "mid"  # or "inferior_endplate"
    slab_mm: Optional[float] = None  # average over slices within +-slab/2 of the chosen one
    region: str = "l3"  # mask computed on the L3 vertebra's slices, or on the whole volume
    levels: str = "l3"  # "all": also T12, L1, L2, L4, L5 and the L1-L5 muscle volume (level_measurements)
    refine_border: bool = False  # drop fat-blurred outline pixels (measurements.refine_border) before measuring

    def validated(self) -> CutoffSet:
        """The cut-off set, after checking every option."""
        if self.region not in REGIONS:
            raise InvalidRequestError(f"region must be one of {REGIONS}, not {self.region!r}")
        if self.levels not in LEVEL_CHOICES:
            raise InvalidRequestError(f"levels must be one of {LEVEL_CHOICES}, not {self.levels!r}")
        if self.convention not in CONVENTIONS:
            raise InvalidRequestError(f"convention must be one of {CONVENTIONS}, not {self.convention!r}")
        low, high = self.muscle_hu
        if not -1000 <= low < high <= 3000:
            raise InvalidRequestError(f"muscle HU range {self.muscle_hu} is not a valid range")
        if self.slab_mm is not None and not 0 <= self.slab_mm <= 100:
            raise InvalidRequestError(f"slab of {self.slab_mm} mm: give 0..100 mm")
        try:
            return cutoff_set(self.cutoffs)
        except ValueError as error:
            raise InvalidRequestError(str(error)) from None


@dataclass
class Models:
    muscle: MuscleModel
    locator: LevelLocator
    names: Dict[str, str] = field(default_factory=dict)  # what the report says about each model


def load_models(muscle_path: Union[str, Path], locator_path: Union[str, Path],
                device: Union[str, torch.device] = "cpu") -> Models:
    """The muscle network and the L3 locator with their file descriptions, as every caller needs them."""
    from .level import load_locator

    return Models(load_model(muscle_path, device), load_locator(locator_path, device),
                  {"muscle": model_description(muscle_path), "l3_locator": model_description(locator_path)})


def model_description(path: Union[str, Path]) -> str:
    """File name and content hash: two reports from the same weights say the same."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name} sha256:{digest}"


@dataclass
class CaseResult:
    record: Dict[str, Any]  # measurements.json
    mask: Optional[np.ndarray]  # on the input grid; the L3 vertebra's slices at least
    location: Optional[L3Location]


def analyse_ct(loaded: LoadedCT, models: Models, subject: Subject, options: MeasureOptions = MeasureOptions(),
               device: Union[str, torch.device] = "cpu", case: str = "") -> CaseResult:
    rules = options.validated()
    image = loaded.image
    warnings: List[str] = []
    single_slice = image.shape[-1] == 1
    record: Dict[str, Any] = {"case": case, "model": dict(models.names), "cutoffs": rules.name,
                              "cutoffs_reference": rules.reference, "muscle_hu_range": list(options.muscle_hu),
                              "sex": subject.sex, "height_m": subject.height_m, "weight_kg": subject.weight_kg,
                              "bmi": None if subject.bmi is None else round(subject.bmi, 1)}
    if single_slice:
        location = L3Location(True, 1.0, slice_index=0, l3_slices=[0], z_mm=float(image.affine[2, 3]),
                              reason="single slice given: measured as the L3 slice")
        warnings.append("single_slice: one slice given, so localisation was skipped and it is assumed to be at L3")
    else:
        location = locate_l3(models.locator, image, options.convention, device)
    record.update({"has_l3": location.has_l3, "l3_confidence": None if single_slice else location.confidence,
                   "l3_convention": options.convention, "l3_levels_seen": location.levels_seen,
                   "l3_index_axis": location.index_axis})
    positions = (level_positions(location.row_levels, location.row_slices, location.row_body_probability,
                                 location.l3_mid_row)
                 if options.levels == "all" and not single_slice else None)
    levels_range = slices_needed(positions, image.shape[location.index_axis + 1]) if positions else None
    mask = _segment(models.muscle, image, location, options.region, device, levels_range)
    if not location.has_l3:
        warnings.append(f"l3_not_found: {location.reason}")
        record.update({key: None for key in ("l3_slice_index", "l3_z_mm", "l3_slices", "sma_cm2", "muscle_mean_hu",
                                             "imat_cm2", "mask_area_cm2", "smi_cm2_m2", "sarcopenia", "myosteatosis",
                                             "contrast_suspected", "metal_suspected")})
        if positions is not None:
            record.update(_levels(loaded, mask, location, positions, options, None))
        record["warnings"] = warnings
        return CaseResult(record, mask, location)

    k, axis = location.slice_index, location.index_axis
    spacing = affine_to_spacing(np.asarray(image.affine, float), r=3)
    pixel_mm = [s for i, s in enumerate(spacing) if i != axis]
    hu = np.asarray(image[0])
    slab = [j for j in location.l3_slices if options.slab_mm and abs(j - k) * spacing[axis] <= options.slab_mm / 2]
    for j in (slab or [k]) if options.refine_border else ():  # opt-in: docs/measurements.md says why
        index = tuple(j if i == axis else slice(None) for i in range(3))
        mask[index] = refine_border(hu[index], mask[index])
    measured = measure_slices(hu, mask, axis, pixel_mm, slab or [k], options.muscle_hu)
    rating, missing = rate(measured, subject, rules)
    contrast = bool(loaded.header.contrast_agent) or contrast_suspected(np.take(hu, k, axis), pixel_mm)
    metal = metal_suspected(np.take(hu, k, axis), pixel_mm)
    thickness = loaded.header.slice_thickness_mm or float(spacing[axis])
    record.update({
        "l3_slice_index": int(k), "l3_z_mm": location.z_mm,
        "l3_slices": [int(location.l3_slices[0]), int(location.l3_slices[-1])],
        "measured_slices": [int(j) for j in (slab or [k])],
        **rating,
        "contrast_suspected": contrast, "metal_suspected": metal, "slice_thickness_mm": round(thickness, 2),
    })
    if loaded.sop_instance_uids and axis == 2:
        record["l3_sop_instance_uid"] = loaded.sop_instance_uids[k]
    if positions is not None:
        record.update(_levels(loaded, mask, location, positions, options, {"slice_index": int(k), **measured.as_dict()}))
    warnings += _warnings(location, single_slice, subject, missing, contrast, metal, thickness)
    record["warnings"] = warnings
    return CaseResult(record, mask, location)


def measure_slices(hu: np.ndarray, mask: np.ndarray, axis: int, pixel_mm: Sequence[float], slices: Sequence[int],
                   muscle_hu: Tuple[float, float]) -> SliceMeasurement:
    """One slice's numbers, or their mean over a slab."""
    per_slice = [measure_slice(np.take(hu, j, axis), np.take(mask, j, axis), pixel_mm, muscle_hu) for j in slices]
    return average(per_slice) if len(per_slice) > 1 else per_slice[0]


def rate(measured: SliceMeasurement, subject: Subject, rules: CutoffSet) -> Tuple[Dict[str, Any], List[str]]:
    """The L3 numbers with SMI and the two flags for a record, and the inputs that were missing."""
    smi = smi_cm2_m2(measured.sma_cm2, subject.height_m)
    sarcopenia, missing_s = rules.sarcopenia(smi, subject.sex, subject.bmi)
    myosteatosis, missing_m = rules.myosteatosis(measured.muscle_mean_hu, subject.bmi)
    return ({**measured.as_dict(), "smi_cm2_m2": None if smi is None else round(smi, 2), "sarcopenia": sarcopenia,
             "myosteatosis": myosteatosis}, missing_s + missing_m)


def _levels(loaded: LoadedCT, mask: Optional[np.ndarray], location: L3Location,
            positions: Dict[str, LevelPosition], options: MeasureOptions,
            l3_values: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Per-level numbers; L3's entry is the L3 result itself (`l3_values`, None without L3: its
    slice is chosen by both locator heads, and it is the one the cut-offs apply to)."""
    if mask is None:  # no level in view and no L3
        return {"levels": {name: {"in_view": False, "reason": f"the middle of {name} is not in the scan"}
                           for name in positions}, "muscle_volume_l1_l5_cm3": None}
    spacing = affine_to_spacing(np.asarray(loaded.image.affine, float), r=3)
    found = measure_levels(np.asarray(loaded.image[0]), mask, location.index_axis, spacing, positions,
                           options.muscle_hu)
    if l3_values is None:
        found["levels"]["L3"] = {"in_view": False, "reason": location.reason}
    else:
        found["levels"]["L3"].update({"in_view": True, **l3_values})
    return found


def _segment(model: MuscleModel, image, location: L3Location, region: str, device,
             levels_range: Optional[Tuple[int, int]] = None) -> Optional[np.ndarray]:
    """The muscle mask on the input grid. Region "l3": the L3 vertebra's slices (one spare on each
    side) and the slices of the other levels asked for (`levels_range`); the whole volume if it is
    not stored as axial slices; None when there is nothing to measure. "all": everything."""
    ranges = [levels_range] if levels_range else []
    if location.has_l3:
        first, last = location.l3_slices[0], location.l3_slices[-1]
        ranges.append((max(first - 1, 0), min(last + 2, image.shape[-1])))
    if region == "all" or (ranges and location.index_axis != 2):
        return predict_mask(model, image, device)
    if not ranges:
        return None
    return predict_mask(model, image, device, (min(r[0] for r in ranges), max(r[1] for r in ranges)))


def _warnings(location: L3Location, single_slice: bool, subject: Subject, missing: List[str], contrast: bool,
              metal: bool, thickness_mm: float) -> List[str]:
    found = []
    if not single_slice and location.confidence < MIN_CONFIDENCE:
        found.append(f"low_confidence: L3 choice confidence {location.confidence:.2f}; check the slice"
                     + (f" ({location.reason})" if location.reason else ""))
    if subject.height_m is None:
        found.append("height_missing: no height given or in the DICOM header (PatientSize): SMI and sarcopenia not computed")
    if "sex" in missing:
        found.append("sex_missing: sarcopenia cut-offs are sex-specific: not computed")
    if "bmi" in missing:
        found.append("weight_missing: the BMI-dependent cut-offs need weight and height: not computed")
    if contrast:
        found.append("contrast_suspected: contrast-enhanced scan: mean muscle HU reads higher than unenhanced")
    if metal:
        found.append("metal_suspected: metal on the L3 slice; its streaks read as fat, so SMA and muscle HU may be "
                     "low: check the mask, or measure a slice clear of the streaks")
    if thickness_mm > THICK_SLICE_MM:
        found.append(f"thick_slices: {thickness_mm:.1f} mm slices: partial volume biases SMA and HU")
    return found
