"""A DICOM series reads back to the phantom's HU and geometry, whatever order the files come in."""

import nibabel as nib
import numpy as np
import pytest

from sarcopenia_app.ct_input import InvalidCTError
from sarcopenia_app.dicom_io import read_series
from sarcopenia_app.phantom import generate_case, write_case


def test_series_matches_the_nifti_of_the_same_case(tmp_path):
    case = generate_case(4, 0, acquisition_overrides={"coverage": "abdomen"}, matrix=64, max_slices=12)
    write_case(case, tmp_path / "d", "dicom", "none", with_label=False)
    record = write_case(case, tmp_path / "n", "nifti", "none", with_label=False)
    volume = read_series(tmp_path / "d" / case.case_id)
    nifti = nib.load(tmp_path / "n" / record["files"]["image"])
    ras = nib.as_closest_canonical(nifti)
    from_dicom = nib.as_closest_canonical(nib.Nifti1Image(volume.hu, volume.affine_ras))
    assert np.array_equal(np.asarray(from_dicom.dataobj), np.asarray(ras.dataobj))
    assert np.allclose(from_dicom.affine, ras.affine, atol=1e-3)
    assert len(volume.sop_instance_uids) == case.hu.shape[2]


def test_a_folder_without_ct_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(InvalidCTError, match="no DICOM images"):
        read_series(tmp_path)
