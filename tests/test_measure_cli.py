"""`sarcopenia measure`: the contract other tools rely on, on tiny generated NIfTI and DICOM."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from sarcopenia_app.phantom import generate_case, write_case
from sarcopenia_app.phantom.writer import stored_layout, write_nifti

EXPECTED_KEYS = {"case", "has_l3", "l3_slice_index", "l3_z_mm", "l3_confidence", "sma_cm2", "muscle_mean_hu",
                 "imat_cm2", "smi_cm2_m2", "sarcopenia", "myosteatosis", "cutoffs", "model", "warnings"}


def measure(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sarcopenia_app.cli", "measure", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """One NIfTI case and one DICOM series with L3 (seed 2000 cases 3 and 4), one chest-only case
    and one corrupt file, measured in one run."""
    tmp = tmp_path_factory.mktemp("measure")
    inputs = tmp / "inputs"
    nifti = [write_case(generate_case(2000, 3, matrix=128, max_slices=90), inputs, "nifti", "none", False)]
    dicom = [write_case(generate_case(2000, 4, matrix=128, max_slices=90), tmp / "dicom", "dicom", "none", False)]
    (inputs / f"{dicom[0]['id']}").symlink_to(tmp / "dicom" / dicom[0]["id"], target_is_directory=True)
    (inputs / "broken.nii.gz").write_bytes(b"not a nifti at all")
    out = tmp / "out"
    result = measure(str(inputs), "--out", str(out), "--sex", "F", "--height-m", "1.65", "--device", "cpu")
    truths = {r["id"]: r for r in nifti + dicom}
    return result, out, truths, tmp


def test_every_case_gets_its_outputs_and_a_bad_case_is_skipped(cohort):
    result, out, truths, _ = cohort
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAILED broken" in result.stderr
    rows = {row["case"]: row for row in csv.DictReader(open(out / "measurements.csv"))}
    assert set(rows) == set(truths) | {"broken"}
    assert rows["broken"]["error"] and not rows["broken"]["sma_cm2"]
    for case_id, truth in truths.items():
        record = json.loads((out / case_id / "measurements.json").read_text())
        assert EXPECTED_KEYS <= set(record)
        assert record["has_l3"] is True and record["metal_suspected"] is False
        first, last = truth["l3_index_range"]
        assert first <= record["l3_slice_index"] <= last  # never outside the L3 vertebra
        assert record["sma_cm2"] == pytest.approx(truth["sma_cm2"], rel=0.15)
        assert record["smi_cm2_m2"] == pytest.approx(record["sma_cm2"] / 1.65 ** 2, abs=0.01)
        assert record["sarcopenia"] == (record["smi_cm2_m2"] < 38.5)
        if record["input"].endswith(".nii.gz"):  # no weight anywhere: BMI-dependent flag unknown
            assert record["myosteatosis"] is None and any(w.startswith("weight_missing") for w in record["warnings"])
        else:  # DICOM PatientWeight is used; the height typed on the command line wins over PatientSize
            assert record["weight_kg"] == pytest.approx(truth["weight_kg"], abs=0.1) and record["height_m"] == 1.65
            assert record["myosteatosis"] == (record["muscle_mean_hu"] < (41 if record["bmi"] < 25 else 33))
        mask = nib.load(out / case_id / "muscle.nii.gz")
        assert mask.shape[2] == truth["shape"][2]
        covered = np.nonzero(np.asarray(mask.dataobj).reshape(-1, mask.shape[2]).any(axis=0))[0]
        assert covered.min() <= first and covered.max() >= last  # every slice of L3, not only the chosen one
        assert (out / case_id / "l3.png").stat().st_size > 10_000


def test_nifti_index_counts_along_the_stored_third_axis(cohort):
    _, out, truths, tmp = cohort
    case_id = next(c for c in truths if (tmp / "inputs" / f"{c}.nii.gz").exists())
    record = json.loads((out / case_id / "measurements.json").read_text())
    image = nib.load(tmp / "inputs" / f"{case_id}.nii.gz")
    z_mm = (image.affine @ [0, 0, record["l3_slice_index"], 1])[2]
    assert record["l3_z_mm"] == pytest.approx(z_mm, abs=0.05)


def test_dicom_series_reports_the_sop_instance_uid_of_the_l3_slice(cohort):
    _, out, truths, tmp = cohort
    case_id = next(c for c in truths if (tmp / "dicom" / c).is_dir())
    record = json.loads((out / case_id / "measurements.json").read_text())
    slices = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp / "dicom" / case_id).iterdir()]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert record["l3_sop_instance_uid"] == slices[record["l3_slice_index"]].SOPInstanceUID
    assert record["l3_z_mm"] == pytest.approx(float(slices[record["l3_slice_index"]].ImagePositionPatient[2]), abs=0.05)


def test_chest_only_volume_is_reported_without_l3_and_all_failed_exits_nonzero(tmp_path):
    case = generate_case(2000, 1, matrix=128, acquisition_overrides={"coverage": "chest"})
    affine, to_stored = stored_layout(case, "RAS")
    write_nifti(tmp_path / "chest.nii.gz", to_stored(case.hu), affine)
    result = measure(str(tmp_path / "chest.nii.gz"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "chest" / "measurements.json").read_text())
    assert record["has_l3"] is False and record["l3_slice_index"] is None and record["sma_cm2"] is None
    assert any(w.startswith("l3_not_found") for w in record["warnings"])
    (tmp_path / "bad.nii.gz").write_bytes(b"\x00" * 100)
    failed = measure(str(tmp_path / "bad.nii.gz"), "--out", str(tmp_path / "out2"))
    assert failed.returncode != 0 and "FAILED bad" in failed.stderr


def test_single_real_dicom_slice_is_measured_without_localisation(tmp_path):
    site = Path(pydicom.__file__).resolve().parents[1]
    real = site / "data_store" / "data" / "explicit_VR-UN.dcm"
    if not real.exists():
        pytest.skip("pydicom-data is not installed")
    result = measure(str(real), "--out", str(tmp_path), "--sex", "M", "--height-m", "1.8", "--weight-kg", "80")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "explicit_VR-UN.dcm" / "measurements.json").read_text())
    assert record["l3_slice_index"] == 0 and record["l3_confidence"] is None
    assert record["sma_cm2"] > 20 and record["myosteatosis"] in (True, False)
    assert any(w.startswith("single_slice") for w in record["warnings"])
    assert record["contrast_suspected"] is True  # enhanced kidneys and aorta
    assert record["metal_suspected"] is False  # dense bone and contrast are not metal
