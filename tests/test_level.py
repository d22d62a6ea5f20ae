"""L3 localisation: projection geometry, training, and the shipped locator on generated scans."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from sarcopenia_app.level import load_locator, locate_l3
from sarcopenia_app.level.locator import LEVEL_NAMES, LOWEST_TRAINED_LEVEL, build_locator, level_name
from sarcopenia_app.level.projection import ROW_MM, project
from sarcopenia_app.level.training import LevelSample, augment, loss, phantom_sample
from sarcopenia_app.phantom import generate_case
from sarcopenia_app.phantom.writer import stored_layout

LOCATOR = Path(__file__).resolve().parents[1] / "model" / "l3_locator.pt"


def _volume_with_marker(flip_z: bool, lps: bool):
    """Air-filled box with a body and a dense plate at stored slices 30..32 of 60 (2.5 mm)."""
    volume = np.full((64, 48, 60), -1000.0, np.float32)
    volume[8:56, 8:40] = 40.0
    volume[20:44, 20:30, 30:33] = 900.0
    affine = np.diag([-1.5 if lps else 1.5, -1.5 if lps else 1.5, 2.5, 1.0])
    if flip_z:
        volume = volume[:, :, ::-1].copy()
        affine[2, 2], affine[2, 3] = -2.5, 59 * 2.5
    return MetaTensor(torch.from_numpy(volume)[None], affine=torch.from_numpy(affine))


@pytest.mark.parametrize("flip_z", [False, True])
@pytest.mark.parametrize("lps", [False, True])
def test_projection_rows_map_back_to_stored_slices(flip_z, lps):
    projection = project(_volume_with_marker(flip_z, lps))
    bone_rows = np.nonzero(projection.image[0].max(axis=0) > 0.5)[0]
    stored = sorted(projection.stored_slice(r) for r in (bone_rows[0], bone_rows[-1]))
    expected = (59 - 32, 59 - 30) if flip_z else (30, 32)
    assert stored[0] == pytest.approx(expected[0], abs=1.0) and stored[1] == pytest.approx(expected[1], abs=1.0)
    assert projection.rows == int((60 - 1) * 2.5 / ROW_MM) + 1
    assert projection.image.shape[:2] == (2, 160)


def test_a_few_training_steps_lower_the_loss():
    sample = phantom_sample(generate_case(4000, 3, matrix=96, max_slices=120))
    assert sample.in_l3.any() and sample.level.min() < 14 < sample.level.max()
    rng = np.random.default_rng(0)
    batch = [torch.from_numpy(np.stack(parts)) for parts in zip(*[augment(sample, 96, rng) for _ in range(4)])]
    torch.manual_seed(0)
    locator = build_locator()
    optimizer = torch.optim.Adam(locator.network.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        value = loss(locator.network(batch[0]), *batch[1:])
        value.backward()
        optimizer.step()
        losses.append(float(value))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_samples_keep_the_whole_level_and_views_clip_it_at_the_lowest_trained_level():
    """A cached sample holds the coordinate from T1 on, so a cache serves any LOWEST_TRAINED_LEVEL;
    a training view teaches every row above that level as that level."""
    rows = 400
    level = np.linspace(LEVEL_NAMES.index("S1"), LEVEL_NAMES.index("T3"), rows).astype(np.float32)  # feet first
    sample = LevelSample(np.zeros((2, 32, rows), np.float32), level, np.zeros(rows, np.float32),
                         np.zeros(rows, np.float32))
    rng = np.random.default_rng(0)
    taught = np.concatenate([view[1][view[4] > 0] for view in (augment(sample, 512, rng) for _ in range(40))])
    assert taught.min() == pytest.approx(LOWEST_TRAINED_LEVEL) and taught.max() > LEVEL_NAMES.index("L5")
    assert level_name(LOWEST_TRAINED_LEVEL + 1) == LEVEL_NAMES[int(LOWEST_TRAINED_LEVEL) + 1]
    assert level_name(LOWEST_TRAINED_LEVEL) == f"{LEVEL_NAMES[int(LOWEST_TRAINED_LEVEL)]} or above"
    chest = phantom_sample(generate_case(3100, 1, matrix=64, max_slices=200))  # a chest scan from T2
    assert chest.level.min() < LOWEST_TRAINED_LEVEL - 2


def _stored_image(case):
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    return MetaTensor(torch.from_numpy(to_stored(case.hu).astype(np.float32))[None], affine=torch.from_numpy(affine))


@pytest.fixture(scope="module")
def locator():
    return load_locator(LOCATOR)


def test_shipped_locator_finds_mid_l3_in_either_z_direction(locator):
    case = generate_case(2000, 3, matrix=128, max_slices=120)
    image = _stored_image(case)
    found = locate_l3(locator, image)
    assert found.has_l3 and found.confidence > 0.5
    assert found.slice_index in case.level_slices("L3")
    assert abs(found.slice_index - case.l3_mid_index) * case.spacing_mm[2] <= max(case.spacing_mm[2], 3.0)
    assert found.l3_slices[0] <= case.l3_mid_index <= found.l3_slices[-1]
    flipped_affine = image.affine.clone()
    flipped_affine[:3, 2] *= -1
    flipped_affine[:3, 3] = torch.as_tensor(image.affine[:3, :] @ torch.tensor([0.0, 0.0, image.shape[-1] - 1, 1.0],
                                                                            dtype=image.affine.dtype))
    flipped = MetaTensor(torch.flip(image.as_tensor(), dims=[-1]), affine=flipped_affine)
    found_flipped = locate_l3(locator, flipped)
    assert found_flipped.slice_index == image.shape[-1] - 1 - found.slice_index
    assert found_flipped.z_mm == pytest.approx(found.z_mm, abs=0.01)
    endplate = locate_l3(locator, image, convention="inferior_endplate")
    assert endplate.slice_index < found.slice_index


def test_chest_only_scan_is_reported_without_l3(locator):
    case = generate_case(2000, 1, matrix=128, acquisition_overrides={"coverage": "chest"})
    found = locate_l3(locator, _stored_image(case))
    assert not found.has_l3 and found.slice_index is None
    assert "not in the field of view" in found.reason


# ---- the decision from the two heads' rows (predict_rows replaced by given rows) -------------------
ROWS = 60  # _volume_with_marker: 60 slices of 2.5 mm -> 74 rows of 2 mm; the test uses the first 60


def _decide(monkeypatch, levels, probability):
    import sarcopenia_app.level.locator as locator_module

    image = _volume_with_marker(False, False)
    rows = project(image).rows
    pad = lambda v, fill: np.concatenate([np.asarray(v, float), np.full(rows - len(v), fill)])  # noqa: E731
    monkeypatch.setattr(locator_module, "predict_rows",
                        lambda *_: (pad(levels, levels[-1]), pad(probability, probability[-1]), np.zeros(0)))
    return locate_l3(None, image), rows


def test_agreeing_heads_give_a_confident_slice_without_doubt(monkeypatch):
    levels = np.linspace(17.0, 11.0, ROWS)  # crosses 14 at row 29.5
    probability = np.where(np.abs(levels - 14.0) < 0.45, 0.95, 0.03)
    found, _ = _decide(monkeypatch, levels, probability)
    assert found.has_l3 and found.confidence > 0.25 and found.reason == ""
    assert found.slice_index == round(29.5 * ROW_MM / 2.5)


def test_body_found_but_level_count_drifting_is_answered_with_the_doubt(monkeypatch):
    """A short scan without ribs or pelvis: the level head reads 13.2 everywhere, the body head
    still peaks at the vertebra. The old answer was "no L3"."""
    levels = np.full(ROWS, 13.2)
    probability = np.clip(0.55 - np.abs(np.arange(ROWS) - 40) * 0.04, 0.03, None)
    found, _ = _decide(monkeypatch, levels, probability)
    assert found.has_l3 and found.confidence <= 0.2
    assert found.reason.startswith("L3 uncertain") and "level count" in found.reason
    assert found.slice_index == round(40 * ROW_MM / 2.5)


def test_no_body_rows_but_a_level_crossing_inside_is_answered_with_the_doubt(monkeypatch):
    levels = np.linspace(16.0, 12.0, ROWS)  # crosses 14 at row 29.5
    found, _ = _decide(monkeypatch, levels, np.full(ROWS, 0.05))
    assert found.has_l3 and found.confidence <= 0.2 and "no vertebral body was recognised" in found.reason
    assert found.slice_index == round(29.5 * ROW_MM / 2.5)


def test_a_stack_too_short_to_count_is_not_given_l3_by_the_count_alone(monkeypatch):
    """20 slices of 2 mm (a real upper-abdomen stack at T11-T12 read "L3" this way): the level
    count crossing L3 with no L3 body found is not an answer on 38 mm of scan."""
    import sarcopenia_app.level.locator as locator_module

    image = MetaTensor(_volume_with_marker(False, False)[..., 20:35].clone(), affine=_volume_with_marker(False, False).affine)
    rows = project(image).rows
    assert (rows - 1) * ROW_MM < locator_module.MIN_COUNT_MM
    levels = np.linspace(15.0, 13.0, rows)
    monkeypatch.setattr(locator_module, "predict_rows", lambda *_: (levels, np.full(rows, 0.05), np.zeros(0)))
    found = locate_l3(None, image)
    assert not found.has_l3 and "too short to count vertebrae" in found.reason


@pytest.mark.parametrize("levels", [np.linspace(9.0, 12.5, ROWS)[::-1],  # chest: never reads 14
                                    np.linspace(14.05, 11.0, ROWS)])  # reads 14 only at its edge row
def test_scan_without_l3_evidence_is_reported_without_l3(monkeypatch, levels):
    found, _ = _decide(monkeypatch, levels, np.full(ROWS, 0.05))
    assert not found.has_l3 and found.slice_index is None and "not in the field of view" in found.reason


def test_adding_the_body_head_keeps_the_first_two_outputs():
    """Fine-tuning a locator file without the body head starts from exactly its answers."""
    from sarcopenia_app.level.locator import LocatorConfig
    from sarcopenia_app.level.training import with_body_head

    torch.manual_seed(0)
    old = build_locator(LocatorConfig(channels=(4, 8, 16), body_head=False))
    widened = with_body_head(old)
    old.network.eval(), widened.network.eval()
    projection = torch.randn(2, 2, 32, 48)
    with torch.no_grad():
        before, after = old.network(projection), widened.network(projection)
    assert widened.config.body_head and after.shape == (2, 3, 48)
    assert torch.allclose(before, after[:, :2], atol=1e-5)
