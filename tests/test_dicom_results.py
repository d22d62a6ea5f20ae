"""DICOM SR (TID 1500) of the L3 result: `sarcopenia measure --sr` writes a SEG and an SR that
read back with pydicom and highdicom; a real Orthanc stores and returns them; the server stores an
SR next to the SEG of every final label saved to a DICOMweb datastore."""

import io
import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pacs import running_orthanc
from servers import app_copy, direct_http, offline_env, running_server

from sarcopenia_app.dicom_results import read_report
from sarcopenia_app.dicomweb_upload import upload_folder
from sarcopenia_app.phantom import generate_case, write_case

HEIGHT_M = 1.65
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One DICOM series with L3 (the case test_measure_cli measures too), measured with --sr."""
    tmp = tmp_path_factory.mktemp("sr")
    truth = write_case(generate_case(2000, 4, matrix=128, max_slices=90), tmp / "dicom", "dicom", "none", False)
    series = tmp / "dicom" / truth["id"]
    out = tmp / "out"
    result = subprocess.run([sys.executable, "-m", "sarcopenia_app.cli", "measure", str(series), "--out", str(out),
                             "--sr", "--sex", "F", "--height-m", str(HEIGHT_M), "--workers", "1", "--device", "cpu"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    case_dir = out / truth["id"]
    return json.loads((case_dir / "measurements.json").read_text()), case_dir, series, tmp


def expected_report(record: dict) -> dict:
    flag = {True: "Yes", False: "No"}
    return {"Area": (record["sma_cm2"], "cm2"), "Skeletal muscle index": (record["smi_cm2_m2"], "cm2/m2"),
            "Mean Attenuation Coefficient": (record["muscle_mean_hu"], "[hnsf'U]"),
            "Intermuscular adipose tissue area": (record["imat_cm2"], "cm2"),
            "Sarcopenia by SMI cut-off": flag[record["sarcopenia"]],
            "Myosteatosis by muscle attenuation cut-off": flag[record["myosteatosis"]],
            "Cut-off set": record["cutoffs"], "l3_sop_instance_uid": record["l3_sop_instance_uid"],
            "algorithm_version": record["model"]["muscle"]}


def test_measure_sr_holds_the_l3_numbers_flags_cutoffs_model_and_references(measured):
    record, case_dir, _, _ = measured
    sr = pydicom.dcmread(case_dir / record["sr_file"])
    seg = pydicom.dcmread(case_dir / record["seg_file"])
    assert sr.SOPClassUID == SR_CLASS and sr.Modality == "SR"
    assert sr.StudyInstanceUID == seg.StudyInstanceUID  # the CT's study, beside the SEG
    assert hd.sr.Comprehensive3DSR.from_dataset(sr).SOPInstanceUID == record["sr_sop_instance_uid"]
    assert read_report(sr) == {**expected_report(record), "seg_sop_instance_uid": seg.SOPInstanceUID}
    sources = {frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
               for frame in seg.PerFrameFunctionalGroupsSequence}
    assert record["l3_sop_instance_uid"] in sources


def test_sr_and_seg_round_trip_through_a_real_orthanc(measured):
    record, case_dir, series, tmp = measured
    (tmp / "orthanc").mkdir()
    with running_orthanc(tmp / "orthanc") as orthanc:
        for folder in (series, case_dir):
            report = upload_folder(orthanc.dicomweb, folder)
            assert report.stored and not report.refused, report
        sr = pydicom.dcmread(case_dir / record["sr_file"])
        client = DICOMwebClient(orthanc.dicomweb, session=direct_http())
        back = client.retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)
        seg = pydicom.dcmread(case_dir / record["seg_file"])
        assert read_report(back) == {**expected_report(record), "seg_sop_instance_uid": seg.SOPInstanceUID}
        listed = client.search_for_series(sr.StudyInstanceUID, search_filters={"Modality": "SR"})
        assert [s["0020000E"]["Value"][0] for s in listed] == [sr.SeriesInstanceUID]


def test_the_server_stores_an_sr_next_to_the_seg_of_a_final_label(measured):
    record, _, series, tmp = measured
    work = tmp / "server"
    work.mkdir()
    with running_orthanc(work) as orthanc:
        assert upload_folder(orthanc.dicomweb, series).stored
        image = pydicom.dcmread(next(series.iterdir())).SeriesInstanceUID
        env = offline_env(work)
        with running_server(app_copy(work), orthanc.dicomweb, env, work, ("models", "muscle_seg")) as url:
            http = direct_http()
            inferred = http.post(f"{url}/infer/muscle_seg", params={"image": image, "output": "image"},
                                 data={"params": json.dumps({"sex": "F", "height_m": HEIGHT_M})}, timeout=300)
            assert inferred.status_code == 200, inferred.text[-2000:]
            saved = http.put(f"{url}/datastore/label", params={"image": image, "tag": "final"},
                             files={"label": ("label.nii.gz", io.BytesIO(inferred.content))}, timeout=300)
            assert saved.status_code == 200, saved.text[-2000:]
        client = DICOMwebClient(orthanc.dicomweb, session=direct_http())
        study = pydicom.dcmread(next(series.iterdir())).StudyInstanceUID
        found = {s["00080060"]["Value"][0]: s["0020000E"]["Value"][0]
                 for s in client.search_for_series(study) if s["00080060"]["Value"][0] in ("SEG", "SR")}
        assert set(found) == {"SEG", "SR"}, (work / "server.log").read_text()[-3000:]
        instance = client.search_for_instances(study, found["SR"])[0]["00080018"]["Value"][0]
        report = read_report(client.retrieve_instance(study, found["SR"], instance))
        seg_uid = client.search_for_instances(study, found["SEG"])[0]["00080018"]["Value"][0]
        assert report["seg_sop_instance_uid"] == seg_uid
        assert report["l3_sop_instance_uid"] == record["l3_sop_instance_uid"]  # the server found the same L3
        assert report["Area"][0] == pytest.approx(record["sma_cm2"], rel=0.02)  # the saved label, measured again
        assert report["Skeletal muscle index"][0] == pytest.approx(report["Area"][0] / HEIGHT_M ** 2, abs=0.01)
