"""The L3 result as DICOM objects a PACS keeps: a SEG of the measured muscle and a TID 1500 SR.

The SR (Comprehensive 3D SR, "Imaging Measurement Report", built with highdicom) holds one planar
ROI group: skeletal muscle at the L3 vertebra, referencing the SEG frame on the L3 slice (and so
the L3 CT instance), with SMA, SMI, mean muscle attenuation and IMAT area, the sarcopenia and
myosteatosis flags, the cut-off set, and the models (algorithm name, version = model file hash,
parameters). Numbers that could not be computed (no height: no SMI) are left out, never written
as 0. Concepts without a standard code use the private scheme ``99SARCOPENIA``.
"""

from __future__ import annotations

import copy
from importlib.metadata import version
from typing import Any, Dict, List, Optional, Sequence

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

MANUFACTURER = "sarcopenia_app"
ALGORITHM_NAME = "sarcopenia_app muscle_seg"
PRIVATE_SCHEME = "99SARCOPENIA"
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 901, 902
SR_SERIES_DESCRIPTION = "Sarcopenia L3 measurements"
SEGMENT_LABEL = "skeletal_muscle"

L3_VERTEBRA = CodedConcept("36470004", "SCT", "Third lumbar vertebra")
SMA = codes.SCT.Area
SMI = CodedConcept("SMI", PRIVATE_SCHEME, "Skeletal muscle index")
IMAT_AREA = CodedConcept("IMAT", PRIVATE_SCHEME, "Intermuscular adipose tissue area")
SARCOPENIA = CodedConcept("SARCOPENIA", PRIVATE_SCHEME, "Sarcopenia by SMI cut-off")
MYOSTEATOSIS = CodedConcept("MYOSTEATOSIS", PRIVATE_SCHEME, "Myosteatosis by muscle attenuation cut-off")
CUTOFF_SET = CodedConcept("CUTOFFS", PRIVATE_SCHEME, "Cut-off set")
CM2_PER_M2 = CodedConcept("cm2/m2", "UCUM", "square centimeter per square meter")
CT_PROCEDURE = CodedConcept("25045-6", "LN", "CT unspecified body region")


# type 2 attributes highdicom copies from the source: must be present, may be empty (not every
# scanner or anonymiser writes them)
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


def with_type2_attributes(image: Dataset) -> Dataset:
    """A copy of `image` with the patient and study attributes highdicom needs, empty where missing."""
    filled = copy.deepcopy(image)
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in filled:
            setattr(filled, keyword, "")
    return filled


def muscle_seg(source_images: Sequence[Dataset], frames: np.ndarray, model: str) -> hd.seg.Segmentation:
    """Binary SEG of `frames` (one (rows, columns) mask per source image, same order)."""
    source_images = [with_type2_attributes(image) for image in source_images]
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL, segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.SkeletalMuscle, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence, version=model[:64]))
    return hd.seg.Segmentation(
        source_images=list(source_images), pixel_array=np.asarray(frames, np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="muscle_seg", software_versions=version("sarcopenia-app"),
        device_serial_number="none", series_description="Sarcopenia L3 skeletal muscle")


def seg_frame_on(seg: Dataset, image: Dataset, segment_number: int = 1) -> int:
    """The SEG's frame (1-based) of `segment_number` on `image`, found by the frame's source image
    or, for writers that leave that out, by its position. ValueError if there is none."""
    position = np.asarray(image.ImagePositionPatient, float)
    by_position = None
    for number, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        if int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != segment_number:
            continue
        sources = [source.ReferencedSOPInstanceUID for derivation in frame.get("DerivationImageSequence", [])
                   for source in derivation.get("SourceImageSequence", [])]
        if image.SOPInstanceUID in sources:
            return number
        if "PlanePositionSequence" in frame and np.allclose(
                np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float), position, atol=0.01):
            by_position = by_position or number
    if by_position is None:
        raise ValueError(f"the SEG has no frame of segment {segment_number} on the L3 slice "
                         f"({image.SOPInstanceUID}): the label is empty there")
    return by_position


def _measurements(record: Dict[str, Any]) -> List[hd.sr.Measurement]:
    values = ((SMA, record.get("sma_cm2"), codes.UCUM.SquareCentimeter, None),
              (SMI, record.get("smi_cm2_m2"), CM2_PER_M2, None),
              (codes.DCM.MeanAttenuationCoefficient, record.get("muscle_mean_hu"), codes.UCUM.HounsfieldUnit,
               codes.SCT.Mean),
              (IMAT_AREA, record.get("imat_cm2"), codes.UCUM.SquareCentimeter, None))
    return [hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation)
            for name, value, unit, derivation in values if value is not None]


def _evaluations(record: Dict[str, Any]) -> List[hd.sr.QualitativeEvaluation]:
    answers = {True: codes.SCT.Yes, False: codes.SCT.No}
    found = [hd.sr.QualitativeEvaluation(name, answers[record[key]])
             for name, key in ((SARCOPENIA, "sarcopenia"), (MYOSTEATOSIS, "myosteatosis"))
             if record.get(key) in answers]
    cutoffs = CodedConcept(str(record["cutoffs"]), PRIVATE_SCHEME, str(record["cutoffs"]))  # cutoffs.CUTOFF_SETS
    return found + [hd.sr.QualitativeEvaluation(CUTOFF_SET, cutoffs)]


def _algorithm(record: Dict[str, Any]) -> hd.sr.AlgorithmIdentification:
    models = record.get("model") or {}
    parameters = [f"{name}: {value}" for name, value in sorted(models.items()) if name != "muscle"]
    parameters += [f"cutoffs: {record.get('cutoffs')}", f"muscle_hu_range: {record.get('muscle_hu_range')}",
                   f"l3_convention: {record.get('l3_convention', 'mid')}"]
    return hd.sr.AlgorithmIdentification(ALGORITHM_NAME, str(models.get("muscle", "unknown"))[:64], parameters)


def measurement_report(record: Dict[str, Any], l3_image: Dataset, seg: Dataset,
                       series_instance_uid: Optional[str] = None) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report of an L3 record (analysis.analyse_ct) on `l3_image`, its muscle in `seg`."""
    if record.get("sma_cm2") is None:
        raise ValueError("no L3 measurement in this record: there is nothing to report")
    referenced = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=seg_frame_on(seg, l3_image),
        segment_number=1, source_image=hd.sr.SourceImageForSegmentation(l3_image.SOPClassUID, l3_image.SOPInstanceUID))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="L3 skeletal muscle"),
        referenced_segment=referenced, finding_type=codes.SCT.SkeletalMuscle,
        finding_sites=[hd.sr.FindingSite(L3_VERTEBRA)], algorithm_id=_algorithm(record),
        measurements=_measurements(record), qualitative_evaluations=_evaluations(record))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=ALGORITHM_NAME, model_name=str((record.get("model") or {}).get("muscle", ""))[:64]))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                                     procedure_reported=CT_PROCEDURE, imaging_measurements=[group])
    return hd.sr.Comprehensive3DSR(
        evidence=[with_type2_attributes(l3_image), seg], content=report, series_instance_uid=series_instance_uid or hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        is_complete=True, series_description=SR_SERIES_DESCRIPTION)


def read_report(sr: Dataset) -> Dict[str, Any]:
    """The numbers and flags back from an SR written by `measurement_report` (for tests and
    for anyone checking what the PACS holds)."""
    parsed = hd.sr.Comprehensive3DSR.from_dataset(sr)
    group = parsed.content.get_planar_roi_measurement_groups()[0]
    values: Dict[str, Any] = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
    values.update({e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()})
    segment = group.referenced_segmentation_frame
    values["seg_sop_instance_uid"] = segment.referenced_sop_instance_uid
    values["l3_sop_instance_uid"] = segment.source_image_for_segmentation.referenced_sop_instance_uid
    values["algorithm_version"] = next(_texts(group, ALGORITHM_VERSION_CODE), None)
    return values


ALGORITHM_VERSION_CODE = "111003"  # DCM "Algorithm Version"


def _texts(items, code: str):
    """TEXT values of every content item with concept `code`, depth first."""
    for item in items:
        if item.ConceptNameCodeSequence[0].CodeValue == code and "TextValue" in item:
            yield str(item.TextValue)
        yield from _texts(item.get("ContentSequence", []), code)
