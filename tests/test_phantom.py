"""The phantom's ground truth must be self-consistent: every accuracy figure rests on it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from sarcopenia_app.cli import main as cli_main
from sarcopenia_app.phantom import Anatomy, generate_case
from sarcopenia_app.phantom.spine import vertebra_label
from sarcopenia_app.phantom.writer import write_case, write_dataset

SMALL = dict(matrix=128, max_slices=48)
L3 = vertebra_label("L3")


def _load(path: Path):
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    records = write_dataset(out, count=4, seed=11, label_slices="l3", labelled=3, **SMALL)
    return out, records


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        write_dataset(out, count=2, seed=5, matrix=64, max_slices=24)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    write_dataset(c, count=1, seed=6, matrix=64, max_slices=24)
    assert (c / "truth" / "ph00006_000_muscle.nii.gz").read_bytes() != (a / "truth" / "ph00005_000_muscle.nii.gz").read_bytes()


def test_sidecar_sma_is_area_of_truth_on_l3_slice(dataset):
    out, records = dataset
    checked = 0
    for r in records:
        if not r["has_l3"]:
            continue
        muscle, img = _load(out / r["files"]["muscle"])
        sx, sy, _ = img.header.get_zooms()
        area_cm2 = muscle[:, :, r["l3_mid_index"]].sum() * sx * sy / 100.0
        assert area_cm2 == pytest.approx(r["sma_cm2"], rel=1e-4)
        assert 20.0 < r["sma_cm2"] < 400.0
        checked += 1
    assert checked >= 2


def test_l3_index_lies_inside_the_l3_vertebra(dataset):
    out, records = dataset
    for r in (r for r in records if r["has_l3"]):
        anatomy, _ = _load(out / r["files"]["anatomy"])
        k = r["l3_mid_index"]
        assert (anatomy[:, :, k] == L3).sum() > 20
        first, last = r["l3_index_range"]
        assert first <= k <= last
        assert r["vertebra_index_ranges"]["L3"] == [first, last]
        # below L3 lies L4 or nothing; above it L2 or nothing
        assert not (anatomy[:, :, :first] == vertebra_label("L2")).any()
        assert not (anatomy[:, :, last + 1:] == vertebra_label("L4")).any()


@pytest.mark.parametrize("coverage", ["chest", "pelvis"])
def test_volume_without_l3_says_so(tmp_path, coverage):
    case = generate_case(3, 0, acquisition_overrides={"coverage": coverage}, **SMALL)
    record = write_case(case, tmp_path, "nifti", "l3", with_label=True)
    assert record["has_l3"] is False and record["l3_mid_index"] is None and record["sma_cm2"] is None
    anatomy, _ = _load(tmp_path / record["files"]["anatomy"])
    assert not (anatomy == L3).any()
    assert "label" not in record["files"]


@pytest.mark.parametrize("orientation", ["RAS", "LPS"])
def test_header_orientation_spacing_and_handedness(tmp_path, orientation):
    case = generate_case(21, 1, acquisition_overrides={"orientation": orientation, "coverage": "abdomen"}, **SMALL)
    record = write_case(case, tmp_path, "nifti", "all", with_label=True)
    image, img = _load(tmp_path / record["files"]["image"])
    anatomy, _ = _load(tmp_path / record["files"]["anatomy"])
    assert nib.aff2axcodes(img.affine) == tuple(orientation) == tuple(record["orientation"])
    assert np.allclose(img.header.get_zooms(), record["spacing_mm"], atol=1e-4)
    assert image.dtype == np.int16 and image.shape == tuple(record["shape"])

    def world(label: int) -> np.ndarray:
        ijk = np.argwhere(anatomy == label)
        return nib.affines.apply_affine(img.affine, ijk).mean(axis=0)

    assert world(Anatomy.IVC)[0] > world(Anatomy.AORTA)[0]  # RAS+: the IVC lies on the patient's right
    assert world(Anatomy.RECTUS_ABDOMINIS)[1] > world(Anatomy.PARASPINAL)[1]  # anterior is +y
    assert world(vertebra_label("L1"))[2] > world(vertebra_label("L4"))[2]  # superior is +z
    label, _ = _load(tmp_path / record["files"]["label"])
    assert np.array_equal(label, _load(tmp_path / record["files"]["muscle"])[0])


def test_partial_labels_cover_only_slices_around_l3(dataset):
    out, records = dataset
    with_label = [r for r in records if "label" in r["files"]]
    assert len(with_label) == min(3, sum(r["has_l3"] for r in records))
    assert with_label == [r for r in records if r["has_l3"]][: len(with_label)]
    for r in with_label:
        label, _ = _load(out / r["files"]["label"])
        muscle, _ = _load(out / r["files"]["muscle"])
        painted = sorted(set(np.nonzero(label)[2].tolist()))
        assert painted == r["labelled_slices"] and 1 <= len(painted) <= 5
        first, last = r["l3_index_range"]
        assert all(first <= k <= last for k in painted)
        assert np.array_equal(label[:, :, painted], muscle[:, :, painted])


def test_intensities_overlap_like_real_ct(tmp_path):
    case = generate_case(8, 2, acquisition_overrides={"coverage": "abdomen", "contrast_phase": "unenhanced"},
                         patient_overrides={"arms": "down"}, matrix=256, max_slices=40)
    k = case.l3_mid_index
    hu, anatomy = case.hu[:, :, k].astype(float), case.anatomy[:, :, k]
    muscle = case.muscle[:, :, k] > 0
    assert abs(hu[muscle].mean() - case.patient.muscle_hu) < 15
    assert -135 < hu[anatomy == Anatomy.SUBCUTANEOUS_FAT].mean() < -65
    arm = case.anatomy == Anatomy.ARM_MUSCLE
    assert arm.any() and not (case.muscle.astype(bool) & arm).any()
    assert abs(case.hu[arm].mean() - case.hu[case.muscle > 0].mean()) < 15  # looks the same, is not SMA
    # unenhanced organs sit in the muscle range: intensity alone cannot find muscle
    organ = np.isin(case.anatomy, [Anatomy.LIVER, Anatomy.KIDNEY, Anatomy.SPLEEN])
    if organ.any():
        assert -29 < case.hu[organ].mean() < 150
    assert (case.anatomy == Anatomy.INTERMUSCULAR_FAT).any()


def test_dicom_series_has_realistic_tags(tmp_path):
    case = generate_case(4, 0, acquisition_overrides={"coverage": "abdomen"}, matrix=96, max_slices=24)
    record = write_case(case, tmp_path, "dicom", "none", with_label=False)
    files = sorted((tmp_path / case.case_id).glob("*.dcm"))
    assert len(files) == case.hu.shape[2]
    slices = sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    first = slices[0]
    assert first.Modality == "CT" and first.PatientSex == case.patient.sex
    assert float(first.PatientSize) == pytest.approx(case.patient.height_m)
    assert float(first.PatientWeight) == pytest.approx(case.patient.weight_kg)
    assert [float(v) for v in first.PixelSpacing] == pytest.approx(list(case.spacing_mm[:2]))
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    for k, ds in enumerate(slices):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(hu, case.hu[:, :, k].T)
    if record["has_l3"]:
        k = record["l3_mid_index"]
        assert slices[k].SOPInstanceUID == record["l3_sop_instance_uid"]
        assert float(slices[k].ImagePositionPatient[2]) == pytest.approx(record["l3_mid_z_mm"], abs=1e-3)


def test_cli_contract(tmp_path):
    out = tmp_path / "ds"
    assert cli_main(["phantom", "--out", str(out), "--count", "2", "--seed", "3", "--matrix", "64",
                     "--max-slices", "20", "--label-slices", "all", "--labelled", "1"]) == 0
    ids = sorted(p.name[: -len(".nii.gz")] for p in out.glob("*.nii.gz"))
    assert ids == ["ph00003_000", "ph00003_001"]
    assert [p.name for p in (out / "labels" / "final").iterdir()] == ["ph00003_000.nii.gz"]
    for case_id in ids:
        record = json.loads((out / "truth" / f"{case_id}.json").read_text())
        for key in ("id", "seed", "has_l3", "l3_mid_index", "l3_index_range", "sma_cm2", "sex", "height_m",
                    "weight_kg", "spacing_mm", "orientation"):
            assert key in record
        assert (out / "truth" / f"{case_id}_muscle.nii.gz").exists()
        assert (out / "truth" / f"{case_id}_anatomy.nii.gz").exists()


# ---- wide and stress variation (sarcopenia_app/phantom/variation.py) ------------------------------
from sarcopenia_app.phantom.labels import TRUNK_MUSCLES  # noqa: E402
from sarcopenia_app.phantom.variation import Variation  # noqa: E402

TINY = dict(matrix=112, max_slices=14, acquisition_overrides={"coverage": "abdomen"})


def _mean_hu(case, anatomy_codes):
    pick = np.isin(case.anatomy, [int(a) for a in anatomy_codes])
    return float(case.hu[pick].mean()), int(pick.sum())


def test_variation_stream_leaves_the_standard_draws_alone():
    standard = generate_case(21, 1, **TINY)
    wide = generate_case(21, 1, variation="wide", **TINY)
    assert [lv.z_mid for lv in wide.spine.levels] == [lv.z_mid for lv in standard.spine.levels]
    assert wide.patient.sex == standard.patient.sex and wide.patient.height_m == standard.patient.height_m
    assert wide.variation.mode == "wide" and standard.variation == Variation()


@pytest.mark.parametrize("variation", [
    Variation(mode="wide", deform_mm=8.0, deform_wavelength_mm=120.0),
    Variation(mode="wide", tilt_deg=12.0),
    Variation(mode="wide", fascia_gap_mm=0.0),
    Variation(mode="wide", arm_pose="on_belly"),
])
def test_moved_or_fused_structures_keep_image_and_truth_together(variation):
    """Muscle truth must read muscle HU and fat truth fat HU: a warp applied to one map only
    would put fat under the muscle label."""
    case = generate_case(8, 2, variation=variation, **TINY)
    muscle_hu, n_muscle = _mean_hu(case, TRUNK_MUSCLES)
    fat_hu, _ = _mean_hu(case, (Anatomy.SUBCUTANEOUS_FAT,))
    assert n_muscle > 500
    assert abs(muscle_hu - case.patient.muscle_hu) < 25, muscle_hu
    assert fat_hu < -60
    k = case.l3_mid_index
    assert k is not None and case.sma_cm2(k) > 20


def test_tilt_shifts_the_body_through_the_stack():
    long = {**TINY, "max_slices": 24}
    flat = generate_case(8, 2, variation=Variation(mode="wide"), **long)
    tilted = generate_case(8, 2, variation=Variation(mode="wide", tilt_deg=15.0), **long)

    def drift_mm(case):
        body = case.anatomy > 0
        centre = [np.nonzero(body[:, :, k].any(axis=0))[0].mean() for k in (0, body.shape[2] - 1)]
        return (centre[1] - centre[0]) * case.spacing_mm[1]

    expected = np.tan(np.deg2rad(15.0)) * (tilted.z_anatomical_mm[-1] - tilted.z_anatomical_mm[0])
    assert drift_mm(tilted) - drift_mm(flat) == pytest.approx(expected, rel=0.25)


def test_metal_ascites_and_oedema_change_the_look_not_the_muscle_truth():
    plain = Variation(mode="wide")
    varied = Variation(mode="wide", metal="spine", metal_level="L3", ascites_mm=15.0, oedema=0.8, oedema_hu=0.0)
    a, b = generate_case(8, 2, variation=plain, **TINY), generate_case(8, 2, variation=varied, **TINY)
    implant_hu, n_implant = _mean_hu(b, (Anatomy.IMPLANT,))
    assert n_implant > 0 and implant_hu > 1500
    assert not (b.muscle.astype(bool) & (b.anatomy == Anatomy.IMPLANT)).any()
    fluid_hu, n_fluid = _mean_hu(b, (Anatomy.ASCITES,))
    assert n_fluid > 100 and -20 < fluid_hu < 50
    assert _mean_hu(b, (Anatomy.SUBCUTANEOUS_FAT,))[0] > _mean_hu(a, (Anatomy.SUBCUTANEOUS_FAT,))[0] + 5
    k = b.l3_mid_index
    assert b.hu[:, :, k].std() > a.hu[:, :, k].std()  # streaks


def test_cut_field_of_view_truth_is_what_is_in_view():
    case = generate_case(8, 2, variation=Variation(mode="wide", fov_fraction=0.75), **TINY)
    body = case.anatomy > 0
    assert body[0].any() or body[-1].any()  # the body touches the image's side
    k = case.l3_mid_index
    assert case.sma_cm2(k) == pytest.approx(case.muscle[:, :, k].sum() * case.spacing_mm[0] * case.spacing_mm[1] / 100)


def test_stress_split_draws_from_the_extremes():
    cases = [generate_case(40, i, variation="stress", matrix=64, max_slices=4) for i in range(6)]
    kernels = {c.acquisition.kernel for c in cases}
    assert all(c.variation.deform_mm >= 4.0 for c in cases)
    assert all(c.spacing_mm[2] in (0.5, 0.625, 0.75, 5.0) for c in cases)
    assert kernels - {"standard"}


def test_cli_writes_a_stress_case_with_its_draws(tmp_path):
    assert cli_main(["phantom", "--out", str(tmp_path), "--count", "1", "--seed", "3", "--matrix", "64",
                     "--max-slices", "8", "--variation", "stress"]) == 0
    record = json.loads((tmp_path / "truth" / "ph00003_000.json").read_text())
    assert record["draws"]["variation_mode"] == "stress"


def test_fat_streak_cut_at_its_tip_paints_without_nan():
    """Case 214 of seed 5005 (stress) has a marbling streak whose tip lies on a slice to within
    float32 precision: it once crashed a long training run with a NaN ellipse."""
    with np.errstate(invalid="raise"):
        case = generate_case(5005, 214, matrix=64, max_slices=12, variation="stress",
                             acquisition_overrides={"coverage": "abdomen"})
    assert np.isfinite(case.hu).all()
