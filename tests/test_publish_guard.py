"""A new model replaces the published one only if it is a real model and no worse: the decision
function, and the real train task that uses it."""

import hashlib
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from monailabel.datastore.local import LocalDatastore

from lib.configs.muscle_seg import NETWORK
from lib.trainers.muscle_seg import MuscleSegTrain
from sarcopenia_app.phantom import write_dataset
from sarcopenia_app.publish import all_finite, publish_decision
from sarcopenia_app.segment import published_network
from sarcopenia_app.transforms import DEFAULT_PIXDIM_MM


def test_a_diverged_run_is_not_published():
    assert publish_decision(math.nan, 0.8)[0] is False
    assert publish_decision(0.9, 0.8, weights_finite=False)[0] is False
    assert all_finite({"w": torch.tensor([1.0, math.inf])}) is False and all_finite({"w": torch.ones(2)}) is True


def test_a_worse_model_is_not_published_and_an_equal_or_better_one_is():
    publish, why = publish_decision(0.70, 0.80)
    assert publish is False and "below the published model's 0.8000" in why
    assert publish_decision(0.80, 0.80)[0] is True and publish_decision(0.85, 0.80)[0] is True
    assert publish_decision(0.10, None)[0] is True  # nothing published yet


# ---- the guard in the real train task ------------------------------------------------------------
SHIPPED = Path(__file__).resolve().parents[1] / "model" / "muscle_seg.pt"
SMALL_RUN = {"max_epochs": 1, "crop_px": 64, "samples_per_volume": 4, "val_split": 0.34, "dataset": "Dataset"}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("guard_ds")
    write_dataset(out, count=3, seed=2, matrix=96, max_slices=16, label_slices="l3")
    return out


@pytest.mark.parametrize("request_, expected_log", [
    # from random weights, one epoch at a negligible learning rate: a model far worse than the shipped one
    ({"init": "scratch", "lr": 1e-9}, "is below the published model's"),
    # fine-tuning the shipped model at an absurd learning rate: the weights overflow, the loss turns NaN
    ({"init": "current", "lr": 1e30, "max_epochs": 2}, "contains NaN or Inf. Stop training|the training diverged"),
], ids=["worse", "diverges"])
def test_the_real_train_task_keeps_the_published_model(phantoms, tmp_path, caplog, capfd, request_, expected_log):
    """MuscleSegTrain end to end (the shipped network, tiny phantoms): the published file stays
    byte for byte the same when the run is worse or diverges."""
    published = tmp_path / "muscle_seg.pt"
    shutil.copy2(SHIPPED, published)
    before = hashlib.sha256(published.read_bytes()).hexdigest()
    task = MuscleSegTrain(str(tmp_path / "work"), str(published), published_network(published, NETWORK),
                          DEFAULT_PIXDIM_MM, "t", {})
    datastore = LocalDatastore(str(phantoms), extensions=["*.nii.gz"], auto_reload=False)
    with caplog.at_level(logging.INFO):
        task({**SMALL_RUN, **request_}, datastore)
    assert hashlib.sha256(published.read_bytes()).hexdigest() == before
    assert not list(tmp_path.glob(".muscle_seg.pt.*"))
    said = caplog.text + capfd.readouterr().err  # ignite's own logger writes to stderr
    assert any(phrase in said for phrase in expected_log.split("|")), said[-3000:]
