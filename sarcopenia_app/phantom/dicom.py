"""A phantom case as a DICOM CT series with the tags real scanners write (and our readers need)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .generate import PhantomCase

RESCALE_INTERCEPT = -1024.0


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in ("sarcopenia-phantom",) + parts])


def write_series(case: PhantomCase, folder: Path) -> List[str]:
    """One file per slice; returns the SOPInstanceUIDs by slice index (0 = most inferior)."""
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = case.spacing_mm
    x0, y0, z0 = case.origin_lps_mm
    p, a = case.patient, case.acquisition
    study, series = _uid(case.case_id, "study"), _uid(case.case_id, "series")
    frame = _uid(case.case_id, "frame")
    n = case.hu.shape[2]
    uids = []
    for k in range(n):
        sop = _uid(case.case_id, "sop", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"IM{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName = f"Phantom^{case.case_id}"
        ds.PatientID = case.case_id
        ds.PatientSex = p.sex
        ds.PatientAge = f"{p.age_years:03d}Y"
        ds.PatientSize = f"{p.height_m:.3f}"
        ds.PatientWeight = f"{p.weight_kg:.1f}"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = f"A{case.seed:05d}{case.index:03d}"
        ds.StudyID = "1"
        ds.Modality = "CT"
        ds.Manufacturer = "sarcopenia-app synthetic phantom"
        ds.BodyPartExamined = "ABDOMEN"
        ds.StudyDescription = f"CT {a.coverage.replace('_', ' ')}"
        ds.SeriesDescription = f"{a.contrast_phase} {sz:g} mm"
        ds.SeriesNumber, ds.InstanceNumber = 2, n - k  # scanners number from the head down
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = str(a.kvp)
        if a.contrast_phase != "unenhanced":
            ds.ContrastBolusAgent = "IODINATED"
        ds.SliceThickness = f"{a.slice_thickness_mm:g}"
        ds.SpacingBetweenSlices = f"{sz:g}"
        ds.PixelSpacing = [f"{sy:.4f}", f"{sx:.4f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        z = z0 + k * sz
        ds.ImagePositionPatient = [f"{x0:.4f}", f"{y0:.4f}", f"{z:.4f}"]
        ds.SliceLocation = f"{z:.4f}"
        ds.Rows, ds.Columns = case.hu.shape[1], case.hu.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{RESCALE_INTERCEPT:g}", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        stored = (case.hu[:, :, k].T.astype(np.int32) - int(RESCALE_INTERCEPT)).clip(0, 4095).astype(np.uint16)
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", write_like_original=False)
        uids.append(sop)
    return uids
