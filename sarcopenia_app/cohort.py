"""Measure many scans in one go: find the cases among the inputs, run each, write the outputs.

One bad case is reported and skipped; the rest go on. Outputs per case: measurements.json,
muscle.nii.gz (mask on the input grid, the L3 vertebra's slices at least) and l3.png; for the run:
measurements.csv.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import nibabel as nib
import numpy as np

from .analysis import CaseResult, MeasureOptions, Models, analyse_ct, subject_for
from .ct_input import InvalidCTError
from .ct_loader import VOLUME_SUFFIXES, is_volume_file, load_ct
from .dicom_io import is_dicom_file
from .report import write_cohort_csv, write_l3_png

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseInput:
    name: str
    path: Path


def case_name(path: Path) -> str:
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "case"


def find_cases(inputs: Sequence[Path]) -> List[CaseInput]:
    """Each input is a volume file, a DICOM file, a folder holding one DICOM series, or a folder of
    such inputs (one level deep). Names are made unique."""
    found: List[Path] = []
    for path in inputs:
        if path.is_dir() and _is_collection(path):
            found += sorted(p for p in path.iterdir() if not p.name.startswith(".")
                            and (is_volume_file(p) or (p.is_dir() and _holds_dicom(p))))
        else:
            found.append(path)
    cases, seen = [], set()
    for path in found:
        name, n = case_name(path), 1
        while name in seen:
            n += 1
            name = f"{case_name(path)}_{n}"
        seen.add(name)
        cases.append(CaseInput(name, path))
    return cases


def _holds_dicom(folder: Path) -> bool:
    """A sub-folder counts as a case only if DICOM files are in it (a datastore's labels/ is not)."""
    return any(is_dicom_file(p) for p in folder.rglob("*") if p.is_file())


def _is_collection(folder: Path) -> bool:
    """A folder of inputs (sub-folders or volume files) rather than the files of one series."""
    children = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return any(p.is_dir() or is_volume_file(p) for p in children)


def run_case(case: CaseInput, models: Models, options: MeasureOptions, out_dir: Path, device: str,
             sex: Optional[str] = None, height_m: Optional[float] = None,
             weight_kg: Optional[float] = None) -> Dict:
    loaded = load_ct(case.path)
    subject = subject_for(loaded.header, sex, height_m, weight_kg)
    result: CaseResult = analyse_ct(loaded, models, subject, options, device, case.name)
    record = {"input": str(case.path), **result.record}
    case_dir = out_dir / case.name
    case_dir.mkdir(parents=True, exist_ok=True)
    affine = np.asarray(loaded.image.affine, float)
    if result.mask is not None:
        nib.save(nib.Nifti1Image(result.mask.astype(np.uint8), affine), str(case_dir / "muscle.nii.gz"))
    if record["has_l3"]:
        write_l3_png(case_dir / "l3.png", np.asarray(loaded.image[0]), result.mask, affine, record, result.location)
    (case_dir / "measurements.json").write_text(json.dumps(record, indent=1))
    return record


def run_cohort(cases: Iterable[CaseInput], run: Callable[[CaseInput], Dict], out_dir: Path,
               progress: Callable[[Iterable], Iterable] = lambda x: x) -> List[Dict]:
    """Every case through `run`; failures become rows with an `error` and do not stop the others."""
    records = []
    for case in progress(list(cases)):
        try:
            records.append(run(case))
        except Exception as error:  # noqa: BLE001 - one bad case must not stop a cohort
            logger.error(f"{case.name}: {error}")
            message = str(error) if isinstance(error, (InvalidCTError, ValueError)) else f"{type(error).__name__}: {error}"
            records.append({"case": case.name, "input": str(case.path), "error": message})
    write_cohort_csv(out_dir / "measurements.csv", records)
    return records

