"""The classical baseline on hand-built slices whose tissues are known pixel by pixel."""

import numpy as np
import pytest
from synthetic_abdomen import AIR_HU, abdomen_slice

from sarcopenia_app.baseline import body_mask, segment_muscle_slice, segment_muscle_volume

NEVER_MUSCLE = ("skin", "organ", "bowel", "arm", "table", "kidney", "aorta", "marrow")


def labelled_fraction(mask: np.ndarray, region: np.ndarray) -> float:
    return float((mask & region).sum()) / float(region.sum())


def test_muscle_ring_is_labelled_and_organ_inside_the_cavity_is_not():
    case = abdomen_slice(with_vertebra=False)
    mask = segment_muscle_slice(case.hu, case.pixel_spacing_mm)
    assert labelled_fraction(mask, case.truth["muscle_wall"]) == 1.0
    assert not (mask & case.truth["organ"]).any()
    assert not (mask & ~case.muscle).any()


@pytest.mark.parametrize("front_gap_mm", [3.0, 12.0])
def test_layered_wall_with_a_gap_is_labelled_and_nothing_inside_it(front_gap_mm):
    """Fat channels must neither split the wall nor make the cavity look like the outside."""
    case = abdomen_slice(layered_wall=True, front_gap_mm=front_gap_mm)
    mask = segment_muscle_slice(case.hu, case.pixel_spacing_mm)
    assert np.array_equal(mask, case.muscle)


def test_psoas_and_paraspinals_are_found_from_the_vertebra():
    case = abdomen_slice()
    mask = segment_muscle_slice(case.hu, case.pixel_spacing_mm)
    assert labelled_fraction(mask, case.truth["psoas"]) == 1.0
    assert labelled_fraction(mask, case.truth["paraspinals"]) == 1.0


@pytest.mark.parametrize("structure", NEVER_MUSCLE)
def test_structures_in_the_muscle_hu_range_that_are_not_muscle_stay_unlabelled(structure):
    case = abdomen_slice()
    mask = segment_muscle_slice(case.hu, case.pixel_spacing_mm)
    assert case.truth[structure].any()
    assert not (mask & case.truth[structure]).any()


def test_anisotropic_pixels_give_the_same_anatomy():
    case = abdomen_slice(pixel_spacing_mm=(0.7, 0.9))
    mask = segment_muscle_slice(case.hu, case.pixel_spacing_mm)
    assert np.array_equal(mask, case.muscle)


@pytest.mark.parametrize("turns", [1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_in_plane_orientation_does_not_matter(turns, flip):
    case = abdomen_slice(pixel_spacing_mm=(0.8, 1.0))

    def reorient(image: np.ndarray) -> np.ndarray:
        image = np.rot90(image, turns)
        return np.fliplr(image) if flip else image

    spacing_mm = case.pixel_spacing_mm[::-1] if turns % 2 else case.pixel_spacing_mm
    mask = segment_muscle_slice(reorient(case.hu), spacing_mm)
    assert np.array_equal(mask, reorient(case.muscle))


def test_bowel_gas_inside_the_body_neither_splits_the_body_nor_becomes_muscle():
    case = abdomen_slice()
    gas = case.truth["organ"]
    case.hu[gas] = AIR_HU
    assert body_mask(case.hu)[gas].all()
    assert np.array_equal(segment_muscle_slice(case.hu, case.pixel_spacing_mm), case.muscle)


def test_volume_is_segmented_slice_by_slice_along_the_third_axis():
    with_spine = abdomen_slice()
    without_spine = abdomen_slice(with_vertebra=False)
    air = np.full_like(with_spine.hu, AIR_HU)
    volume = np.stack([air, with_spine.hu, without_spine.hu], axis=2)

    mask = segment_muscle_volume(volume, (1.0, 1.0, 5.0))

    assert mask.shape == volume.shape and mask.dtype == np.uint8
    assert not mask[:, :, 0].any()
    assert np.array_equal(mask[:, :, 1], with_spine.muscle)
    assert np.array_equal(mask[:, :, 2], without_spine.muscle)


def test_volume_must_be_3d():
    with pytest.raises(ValueError):
        segment_muscle_volume(abdomen_slice().hu, (1.0, 1.0, 1.0))
