"""Crop batches for training on generated phantoms (`sarcopenia_app.muscle_training`)."""

from sarcopenia_app.muscle_training import crop_batches, phantom_cases


def test_every_crop_is_used_so_the_pool_of_crops_stays_bounded():
    drawn = []

    def counted_cases():
        for case in phantom_cases((5000,), ("standard",), matrix=64):
            drawn.append(case.index)
            yield case

    batches = crop_batches(counted_cases(), pixdim_mm=4.0, neighbours=1, crop_px=32, crops_per_case=4,
                           batch_size=2, seed=0)
    for _ in range(12):
        image, label = next(batches)
    assert image.shape == (2, 3, 32, 32) and label.shape == (2, 1, 32, 32)
    # 12 batches of 2 crops need 6 cases of 4 crops, plus the cases that fill the pool (2 batches)
    assert len(drawn) <= 12 * 2 // 4 + 1


def test_training_stacks_can_be_centred_on_every_measured_level():
    """Stacks at L3 alone taught L3 alone; every level's stack holds that level's middle."""
    levels = ("T12", "L5", "L1")
    cases = [case for _, case in zip(range(3), phantom_cases((5000,), ("standard",), matrix=48, levels=levels))]
    for case, level in zip(cases, levels):
        assert case.level_mid_index(level) is not None
    assert cases[1].l3_mid_index is None  # 12 slices at L5 do not reach L3's middle
