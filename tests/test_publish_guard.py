"""A new model replaces the published one only if it is a real model and no worse."""

import math

import torch

from sarcopenia_app.publish import all_finite, publish_decision


def test_a_diverged_run_is_not_published():
    assert publish_decision(math.nan, 0.8)[0] is False
    assert publish_decision(0.9, 0.8, weights_finite=False)[0] is False
    assert all_finite({"w": torch.tensor([1.0, math.inf])}) is False and all_finite({"w": torch.ones(2)}) is True


def test_a_worse_model_is_not_published_and_an_equal_or_better_one_is():
    publish, why = publish_decision(0.70, 0.80)
    assert publish is False and "below the published model's 0.8000" in why
    assert publish_decision(0.80, 0.80)[0] is True and publish_decision(0.85, 0.80)[0] is True
    assert publish_decision(0.10, None)[0] is True  # nothing published yet
