"""The cases of a cohort and the outputs of one case: which inputs are cases, and measuring one.

Outputs per case: measurements.json (written last and atomically: its presence means the case is
complete), muscle.nii.gz (mask on the input grid, the L3 vertebra's slices at least), l3.png and,
when asked for and the input is DICOM, a DICOM SEG and SR. Running many cases (a cluster, resume,
the run log, the cohort CSV) is `cohort_engine`'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import nibabel as nib
import numpy as np
import pydicom

from .analysis import CaseResult, MeasureOptions, Models, analyse_ct, subject_for
from .ct_loader import VOLUME_SUFFIXES, LoadedCT, is_volume_file, load_ct
from .dicom_io import dicom_files, is_dicom_file
from .report import write_l3_png
from .safe_files import write_atomically, write_json_atomically

RECORD_FILE = "measurements.json"
SEG_FILE, SR_FILE = "muscle_seg.dcm", "measurements_sr.dcm"


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
             sex: Optional[str] = None, height_m: Optional[float] = None, weight_kg: Optional[float] = None,
             write_sr: bool = False, run_key: Optional[str] = None) -> Dict[str, Any]:
    """Measure one case and write its outputs; `run_key` is stored with the record (see run_key.py)."""
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
    if write_sr:
        record.update(_write_seg_and_sr(case, loaded, result.mask, record, case_dir))
    if run_key is not None:
        record["run_key"] = run_key
    write_json_atomically(case_dir / RECORD_FILE, record, keep_backup=False)
    return record


def _write_seg_and_sr(case: CaseInput, loaded: LoadedCT, mask: Optional[np.ndarray], record: Dict[str, Any],
                      case_dir: Path) -> Dict[str, Any]:
    """muscle_seg.dcm (the measured slices) and measurements_sr.dcm beside the other outputs; for
    an input that is not a DICOM series, or without an L3 measurement, a warning says why not."""
    from .dicom_results import measurement_report, muscle_seg

    why_not = ("the input is not a DICOM series" if not loaded.sop_instance_uids
               else "there is no L3 measurement" if record.get("sma_cm2") is None else None)
    if why_not:
        return {"warnings": record["warnings"] + [f"sr_not_written: {why_not}"]}
    slices = record["measured_slices"]
    wanted = {loaded.sop_instance_uids[k] for k in slices}
    headers = {str(ds.SOPInstanceUID): path for path in dicom_files(case.path)
               if (ds := pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]))
               .get("SOPInstanceUID") in wanted}
    images = [pydicom.dcmread(headers[loaded.sop_instance_uids[k]]) for k in slices]
    seg = muscle_seg(images, np.stack([mask[:, :, k].T for k in slices]), record["model"].get("muscle", ""))
    try:
        sr = measurement_report(record, images[slices.index(record["l3_slice_index"])], seg)
    except ValueError as error:  # an empty mask on the L3 slice: the SEG has no frame to reference
        return {"warnings": record["warnings"] + [f"sr_not_written: {error}"]}
    for name, dataset in ((SEG_FILE, seg), (SR_FILE, sr)):
        write_atomically(case_dir / name, lambda f, ds=dataset: ds.save_as(f, write_like_original=False))
    return {"seg_file": SEG_FILE, "sr_file": SR_FILE, "sr_sop_instance_uid": str(sr.SOPInstanceUID)}


def finished_record(out_dir: Path, case: CaseInput, run_key: str) -> Optional[Dict[str, Any]]:
    """The case's stored record if an earlier run finished it with this key, else None."""
    try:
        record = json.loads((out_dir / case.name / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("run_key") == run_key else None
