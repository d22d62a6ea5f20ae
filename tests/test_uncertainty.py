"""Uncertainty of the muscle network around L3 (sarcopenia_app.uncertainty)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from sarcopenia_app.level import L3Location
from sarcopenia_app.network import NetworkConfig, build_network
from sarcopenia_app.phantom import generate_case
from sarcopenia_app.phantom.writer import stored_layout
from sarcopenia_app.segment import load_model
from sarcopenia_app.uncertainty import DropoutSampling, score_image, scored_slices, summarise

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "model" / "muscle_seg.pt"
PASSES = 2  # one plain, one mirrored: the shipped (full-size) network on one slice stays fast enough for a test


def test_dropout_sampling_samples_dropout_but_keeps_instance_norm_in_inference_mode():
    network = build_network(NetworkConfig(channels=(4, 8), res_units=1, dropout=0.3))
    sampling = DropoutSampling(network).eval()  # what predict_probability does to any network
    kinds = {type(m).__name__: m.training for m in network.modules() if "Dropout" in type(m).__name__
             or "Norm" in type(m).__name__}
    assert kinds == {"Dropout": True, "InstanceNorm2d": False}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(sampling(x), sampling(x))
        network.eval()
        assert torch.equal(network(x), network(x))


def test_score_ignores_field_of_view_and_patient_size():
    """Confident background (air, fat) adds nothing; twice the voxels of the same kind, same score.
    The whole-volume mean entropy, MONAI Label's default, would halve in the first case."""
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 1, size=(4, 20, 20, 3)) * (rng.uniform(size=(20, 20, 3)) > 0.5)
    body = np.ones((20, 20, 3), bool)
    score = summarise(probabilities, body)[0]
    with_air = np.zeros((4, 40, 20, 3))
    with_air[:, :20] = probabilities
    assert summarise(with_air, np.ones((40, 20, 3), bool))[0] == pytest.approx(score, rel=1e-3)
    assert summarise(with_air, np.ones((40, 20, 3), bool))[1] == pytest.approx(summarise(probabilities, body)[1] / 2,
                                                                               rel=1e-3)
    bigger = np.concatenate([probabilities, probabilities], axis=2)
    assert summarise(bigger, np.ones((20, 40, 3), bool))[0] == pytest.approx(score, rel=1e-6)


def test_disagreeing_passes_score_higher_than_agreeing_ones():
    agree = np.full((4, 10, 10, 1), 0.9)
    disagree = np.stack([np.full((10, 10, 1), p) for p in (0.1, 0.9, 0.2, 0.8)])
    assert summarise(disagree, np.ones((10, 10, 1), bool))[0] > 3 * summarise(agree, np.ones((10, 10, 1), bool))[0]
    assert summarise(agree, np.ones((10, 10, 1), bool))[2] == pytest.approx(0.0, abs=1e-9)  # no disagreement


def test_scored_slices_are_at_most_eight_around_mid_l3_inside_the_l3_body():
    location = L3Location(True, 0.9, slice_index=30, l3_slices=list(range(20, 41)))
    assert scored_slices(location, 60) == ("l3", 26, 33)
    near_edge = L3Location(True, 0.9, slice_index=21, l3_slices=list(range(20, 41)))
    assert scored_slices(near_edge, 60) == ("l3", 20, 27)
    assert scored_slices(L3Location(True, 0.9, slice_index=5, l3_slices=[4, 5, 6]), 60) == ("l3", 4, 6)
    assert scored_slices(L3Location(False, 0.8), 60) == ("no_l3", 26, 33)
    assert scored_slices(None, 5) == ("no_l3", 0, 4)


def _phantom(noise_hu: float, air_margin_px: int = 0):
    """A small abdominal phantom (RAS storage: stored slice k = canonical slice k) and its true L3."""
    case = generate_case(21, 0, matrix=96, max_slices=30,
                         acquisition_overrides={"coverage": "abdomen", "noise_hu": noise_hu, "orientation": "RAS"})
    affine, to_stored = stored_layout(case, "RAS")
    hu = to_stored(case.hu).astype(np.float32)
    if air_margin_px:  # a wider field of view: the same patient with more air around
        hu = np.pad(hu, ((air_margin_px, air_margin_px), (air_margin_px, air_margin_px), (0, 0)), constant_values=-1000)
        affine = affine.copy()
        affine[:2, 3] -= air_margin_px * np.diag(affine)[:2]
    mid = case.l3_mid_index
    location = L3Location(True, 1.0, slice_index=mid, l3_slices=[mid])
    return MetaTensor(torch.from_numpy(hu[None]), affine=torch.from_numpy(affine)), location


@pytest.fixture(scope="module")
def shipped_model():
    torch.set_num_threads(2)
    return load_model(SHIPPED_MODEL)


@pytest.fixture(scope="module")
def clean_score(shipped_model):
    image, location = _phantom(noise_hu=15.0)
    return score_image(shipped_model, image, location, passes=PASSES)


def test_heavy_noise_scores_higher_than_the_same_scan_at_ordinary_noise(shipped_model, clean_score):
    image, location = _phantom(noise_hu=120.0)
    noisy = score_image(shipped_model, image, location, passes=PASSES)
    print(f"clean {clean_score}\nnoisy {noisy}")
    assert clean_score.region == noisy.region == "l3"
    assert (clean_score.first_slice, clean_score.last_slice) == (location.l3_slices[0], location.l3_slices[-1])
    assert noisy.score > 1.3 * clean_score.score
    assert noisy.mutual_information_bits > clean_score.mutual_information_bits


def test_a_wider_field_of_view_does_not_change_the_score(shipped_model, clean_score):
    image, location = _phantom(noise_hu=15.0, air_margin_px=24)
    wide = score_image(shipped_model, image, location, passes=PASSES)
    assert wide.score == pytest.approx(clean_score.score, rel=0.1)
