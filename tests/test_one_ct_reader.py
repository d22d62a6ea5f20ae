"""The server and `sarcopenia measure` read CT through one reader (ct_loader.load_ct): the same
scan gives the same L3 slice and the same numbers through both, as a NIfTI file and as a DICOM
series in a PACS, and the server takes sex, height and weight from the DICOM header as the CLI does."""

import json
import subprocess
import sys

import pytest
from pacs import running_orthanc
from servers import app_copy, direct_http, offline_env, running_server

from sarcopenia_app.dicomweb_upload import upload_folder
from sarcopenia_app.dicom_io import read_series_header
from sarcopenia_app.phantom import generate_case
from sarcopenia_app.phantom.writer import write_case

COMPARED = ("has_l3", "l3_slice_index", "l3_slices", "sex", "height_m", "weight_kg", "slice_thickness_mm")
MEASURED = ("sma_cm2", "muscle_mean_hu", "imat_cm2", "smi_cm2_m2")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """One phantom with L3 (seed 2000, case 3) written as NIfTI and as a DICOM series, measured by the CLI."""
    tmp = tmp_path_factory.mktemp("one_reader")
    case = generate_case(2000, 3, matrix=128, max_slices=90)
    nifti = write_case(case, tmp / "nifti", "nifti", "none", False)
    write_case(case, tmp / "dicom", "dicom", "none", False)
    nifti_file = next((tmp / "nifti").glob(f"{nifti['id']}.nii*"))
    dicom_folder = tmp / f"{nifti['id']}_dicom"  # another case name than the NIfTI file's
    (tmp / "dicom" / nifti["id"]).rename(dicom_folder)
    out = tmp / "out"
    done = subprocess.run([sys.executable, "-m", "sarcopenia_app.cli", "measure", str(nifti_file), str(dicom_folder),
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/measurements.json"))]
    cli = {("dicom" if r.get("l3_sop_instance_uid") else "nifti"): r for r in records}
    assert set(cli) == {"nifti", "dicom"} and cli["nifti"]["has_l3"]
    return nifti_file, dicom_folder, cli


@pytest.fixture(scope="module")
def pacs_with_the_scan(scan, tmp_path_factory):
    """A PACS of its own holding the scan's series (the shared test PACS keeps a fixed content),
    and the server on it: (server URL, HTTP session, SeriesInstanceUID)."""
    _, dicom_folder, _ = scan
    tmp = tmp_path_factory.mktemp("one_reader_pacs")
    (tmp / "orthanc").mkdir()
    with running_orthanc(tmp / "orthanc") as orthanc:
        report = upload_folder(orthanc.dicomweb, dicom_folder)
        assert report.stored and not report.refused, report
        with running_server(app_copy(tmp), orthanc.dicomweb, offline_env(tmp), tmp, ("models", "muscle_seg")) as url:
            yield url, direct_http(), str(read_series_header(dicom_folder)[0].SeriesInstanceUID)


def assert_same_measurement(server: dict, cli: dict) -> None:
    assert server["model"] == cli["model"]  # same weights, or the comparison says nothing
    for key in COMPARED:
        assert server[key] == cli[key], key
    for key in MEASURED:
        assert server[key] == pytest.approx(cli[key], rel=0.005, abs=0.05) if cli[key] is not None else server[key] is None, key


def test_a_nifti_file_gives_the_same_slice_and_numbers_through_the_server_and_the_cli(local_stack, scan):
    nifti_file, _, cli = scan
    with open(nifti_file, "rb") as f:
        answer = local_stack.http.post(f"{local_stack.url}/infer/muscle_seg", params={"output": "json"},
                                       files={"file": (nifti_file.name, f)}, timeout=300)
    assert answer.status_code == 200, answer.text
    assert_same_measurement(answer.json()["measurements"], cli["nifti"])


def test_a_dicom_series_gives_the_same_numbers_and_header_facts_through_the_pacs_server_and_the_cli(
        pacs_with_the_scan, scan):
    _, dicom_folder, cli = scan
    url, http, series_uid = pacs_with_the_scan
    answer = http.post(f"{url}/infer/muscle_seg", params={"image": series_uid, "output": "json"}, timeout=300)
    assert answer.status_code == 200, answer.text
    server = answer.json()["measurements"]
    assert_same_measurement(server, cli["dicom"])
    assert server["sex"] in ("M", "F") and server["height_m"] and server["weight_kg"]  # from the header, as in the CLI
    sop_instance_uids = read_series_header(dicom_folder)[1]
    assert server["l3_sop_instance_uid"] == cli["dicom"]["l3_sop_instance_uid"] == sop_instance_uids[server["l3_slice_index"]]
