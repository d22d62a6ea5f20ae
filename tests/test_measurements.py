"""Measurements on known masks and the cut-off logic against hand-computed cases."""

import numpy as np
import pytest

from sarcopenia_app.analysis import Subject, subject_for
from sarcopenia_app.ct_loader import HeaderInfo
from sarcopenia_app.cutoffs import CUTOFF_SETS, cutoff_set
from sarcopenia_app.measurements import (average, contrast_suspected, measure_slice, metal_suspected, refine_border,
                                         smi_cm2_m2)


def test_area_uses_the_real_pixel_size_with_anisotropic_pixels():
    hu = np.full((100, 80), 40.0)
    mask = np.zeros((100, 80), np.uint8)
    mask[10:60, 20:40] = 1  # 50 x 20 = 1000 pixels
    result = measure_slice(hu, mask, pixel_mm=(0.8, 1.25))  # 1 mm² per pixel
    assert result.sma_cm2 == pytest.approx(10.0)
    result = measure_slice(hu, mask, pixel_mm=(0.5, 3.0))  # 1.5 mm² per pixel
    assert result.sma_cm2 == pytest.approx(15.0)
    assert result.muscle_mean_hu == pytest.approx(40.0)


def test_hu_restriction_imat_and_mean_attenuation():
    hu = np.full((10, 10), 50.0)
    hu[0, :] = -100.0  # fat inside the outline: IMAT, not SMA
    hu[1, :] = 300.0  # too dense for muscle (bone, contrast): neither
    hu[2, :] = 10.0
    mask = np.ones((10, 10), np.uint8)
    result = measure_slice(hu, mask, pixel_mm=(1.0, 1.0))
    assert result.mask_area_cm2 == pytest.approx(1.0)
    assert result.sma_cm2 == pytest.approx(0.8)
    assert result.imat_cm2 == pytest.approx(0.1)
    assert result.muscle_mean_hu == pytest.approx((70 * 50 + 10 * 10) / 80)
    narrower = measure_slice(hu, mask, pixel_mm=(1.0, 1.0), muscle_hu=(30.0, 150.0))
    assert narrower.sma_cm2 == pytest.approx(0.7)


def test_empty_mask_has_no_mean_and_slab_average():
    hu = np.zeros((8, 8))
    empty = measure_slice(hu, np.zeros((8, 8)), (1, 1))
    assert empty.sma_cm2 == 0 and empty.muscle_mean_hu is None
    full = measure_slice(hu, np.ones((8, 8)), (1, 1))
    mean = average([empty, full])
    assert mean.sma_cm2 == pytest.approx(full.sma_cm2 / 2)
    assert mean.muscle_mean_hu == pytest.approx(0.0)


def test_smi_and_prado_cutoffs_by_hand():
    smi = smi_cm2_m2(150.0, 1.75)
    assert smi == pytest.approx(48.98, abs=0.01)
    prado = cutoff_set("prado2008")
    assert prado.sarcopenia(smi, "M", None) == (True, [])  # 48.98 < 52.4
    assert prado.sarcopenia(smi, "F", None) == (False, [])  # 48.98 >= 38.5
    assert prado.sarcopenia(52.4, "M", None)[0] is False  # strict "<"
    assert prado.sarcopenia(None, "M", None) == (None, ["height"])
    assert prado.sarcopenia(40.0, None, None) == (None, ["sex"])


def test_martin_cutoffs_depend_on_bmi_for_men_only():
    martin = cutoff_set("martin2013")
    assert martin.sarcopenia(45.0, "M", 24.9) == (False, [])  # >= 43 at BMI < 25
    assert martin.sarcopenia(45.0, "M", 25.0) == (True, [])  # < 53 at BMI >= 25
    assert martin.sarcopenia(40.0, "F", None) == (True, [])  # < 41 for women, BMI not needed
    assert martin.sarcopenia(45.0, "M", None) == (None, ["bmi"])
    assert martin.myosteatosis(38.0, 22.0) == (True, [])  # < 41 HU at BMI < 25
    assert martin.myosteatosis(38.0, 27.0) == (False, [])  # >= 33 HU at BMI >= 25
    assert martin.myosteatosis(38.0, None) == (None, ["bmi"])
    assert cutoff_set("jsh2016").sarcopenia(41.0, "M", None) == (True, [])
    assert set(CUTOFF_SETS) >= {"prado2008", "martin2013", "jsh2016"}
    with pytest.raises(ValueError, match="choose from"):
        cutoff_set("nonsense")


def test_subject_takes_typed_values_over_the_header_and_checks_units():
    header = HeaderInfo(sex="F", height_m=1.62, weight_kg=70.0)
    assert subject_for(header) == Subject("F", 1.62, 70.0)
    assert subject_for(header, sex="m", height_m=1.8) == Subject("M", 1.8, 70.0)
    assert subject_for(header).bmi == pytest.approx(70 / 1.62 ** 2)
    with pytest.raises(ValueError, match="units"):
        subject_for(header, height_m=175)  # centimetres typed as metres


def test_contrast_is_suspected_from_enhanced_vessel_not_from_bone_marrow():
    hu = np.full((120, 120), 40.0)
    yy, xx = np.mgrid[:120, :120]
    vertebra = (yy - 80) ** 2 + (xx - 60) ** 2 < 15 ** 2
    hu[vertebra] = 800.0  # cortex
    hu[(yy - 80) ** 2 + (xx - 60) ** 2 < 12 ** 2] = 220.0  # marrow, inside its cortex
    assert not contrast_suspected(hu, (1.0, 1.0))
    hu[(yy - 50) ** 2 + (xx - 70) ** 2 < 9 ** 2] = 250.0  # enhanced aorta, 2.5 cm² at 1 mm pixels
    assert contrast_suspected(hu, (1.0, 1.0))


def test_metal_is_suspected_from_an_implant_not_from_dense_bone_or_a_bright_speck():
    hu = np.full((120, 120), 40.0)
    yy, xx = np.mgrid[:120, :120]
    hu[(yy - 80) ** 2 + (xx - 60) ** 2 < 15 ** 2] = 1900.0  # dense cortical bone
    hu[50, 50] = hu[51, 52] = 3071.0  # isolated overshoot pixels of a sharp kernel
    assert not metal_suspected(hu, (0.8, 0.8))
    hu[(yy - 80) ** 2 + (xx - 40) ** 2 < 3.5 ** 2] = 3071.0  # a 6 mm pedicle screw, clipped by the scanner
    assert metal_suspected(hu, (0.8, 0.8))


def _muscle_in_fat(noise_hu: float, seed: int = 0):
    """A 30-pixel-radius muscle disc (45 HU) in fat (-100 HU) with a one-pixel partial-volume ring
    (-15 HU: 40 % fat, inside the muscle HU range) and a fat hole inside (IMAT), plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:100, :100]
    r = np.hypot(yy - 50, xx - 50)
    hu = np.where(r < 30, 45.0, -100.0)
    hu[(r >= 30) & (r < 31.5)] = -15.0
    hu[(np.abs(yy - 50) < 3) & (np.abs(xx - 50) < 3)] = -100.0
    hu += rng.normal(0, noise_hu, hu.shape)
    return hu, r


def test_border_refinement_drops_the_fat_blurred_ring_but_not_imat():
    hu, r = _muscle_in_fat(noise_hu=8.0)
    overreaching = (r < 31.5).astype(np.uint8)  # a mask one pixel too wide, as networks draw them
    refined = refine_border(hu, overreaching)
    ring = (r >= 30) & (r < 31.5)
    assert refined[ring].mean() < 0.2  # most of the ring is gone
    assert refined[r < 28].all()  # the interior, fat hole included, is untouched
    before = measure_slice(hu, overreaching, (1.0, 1.0)).muscle_mean_hu
    after = measure_slice(hu, refined, (1.0, 1.0)).muscle_mean_hu
    assert after > before + 3 and 30 < after < 60


def test_border_refinement_leaves_a_right_mask_on_noisy_ct_alone():
    hu, r = _muscle_in_fat(noise_hu=30.0, seed=1)
    exact = (r < 30).astype(np.uint8)
    assert refine_border(hu, exact).sum() >= 0.98 * exact.sum()
