"""The ``uncertain`` strategy and the ``muscle_uncertainty`` scoring method on a real local
datastore, in-process (the server-level behaviour is in test_active_learning_server.py)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from lib.scoring.muscle_uncertainty import MuscleUncertaintyScoring
from lib.strategies.uncertain import MostUncertain
from monailabel.datastore.local import LocalDatastore

from sarcopenia_app.analysis import model_description
from sarcopenia_app.network import NetworkConfig, build_network
from sarcopenia_app.phantom import write_dataset
from sarcopenia_app.segment import MuscleModel
from sarcopenia_app.uncertainty import SCORE_KEY

TINY = NetworkConfig(channels=(4, 8), res_units=1, dropout=0.2)


def tiny_model(path: Path, seed: int) -> Path:
    """A small network on a coarse grid: the real code path, fast on a CPU."""
    torch.manual_seed(seed)
    torch.save(MuscleModel(build_network(TINY), TINY, pixdim_mm=6.0).state(), path)
    return path


def flat_datastore(folder: Path, images=("a", "b", "c"), labelled=("a",)) -> LocalDatastore:
    """Tiny volumes (what is ranked is the stored info, not the pixels)."""
    (folder / "labels" / "final").mkdir(parents=True)
    for name in images:
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.int16), np.eye(4)), folder / f"{name}.nii.gz")
    for name in labelled:
        nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.uint8), np.eye(4)), folder / "labels" / "final" / f"{name}.nii.gz")
    return LocalDatastore(str(folder), extensions=["*.nii.gz"], auto_reload=False)


def test_strategy_never_returns_a_labelled_image_even_the_most_uncertain_one(tmp_path):
    datastore = flat_datastore(tmp_path / "ds")
    for image_id, score in (("a", 9.0), ("b", 1.0), ("c", 2.0)):
        datastore.update_image_info(image_id, {SCORE_KEY: {"score": score, "model": "m"}})
    strategy = MostUncertain(str(tiny_model(tmp_path / "model.pt", 0)))
    answer = strategy({"strategy": "uncertain"}, datastore)
    assert answer["id"] == "c" and answer["uncertainty"]["score"] == 2.0


def test_strategy_returns_nothing_when_every_image_is_labelled(tmp_path):
    datastore = flat_datastore(tmp_path / "ds", images=("a", "b"), labelled=("a", "b"))
    assert MostUncertain(str(tiny_model(tmp_path / "model.pt", 0)))({"strategy": "uncertain"}, datastore) is None


def test_an_image_handed_out_by_any_strategy_within_the_reservation_is_skipped(tmp_path):
    datastore = flat_datastore(tmp_path / "ds")
    datastore.update_image_info("b", {SCORE_KEY: {"score": 5.0}, "strategy": {"random": {"ts": 4_000_000_000}}})
    datastore.update_image_info("c", {SCORE_KEY: {"score": 1.0}})
    answer = MostUncertain(str(tiny_model(tmp_path / "model.pt", 0)))({"strategy": "uncertain"}, datastore)
    assert answer["id"] == "c"


def test_before_any_model_exists_nothing_is_scored_and_the_strategy_says_so(tmp_path):
    datastore = flat_datastore(tmp_path / "ds")
    missing = str(tmp_path / "muscle_seg.pt")
    summary = MuscleUncertaintyScoring(missing, str(tmp_path / "l3_locator.pt"))({}, datastore)
    assert summary["status"] == "no_model"
    assert all(SCORE_KEY not in datastore.get_image_info(i) for i in datastore.list_images())
    answer = MostUncertain(missing)({"strategy": "uncertain"}, datastore)
    assert answer["id"] in ("b", "c")
    assert "no trained muscle model" in answer["reason"] and answer["uncertainty"] is None


@pytest.fixture()
def phantom_datastore(tmp_path) -> LocalDatastore:
    write_dataset(tmp_path / "ds", count=3, seed=41, matrix=48, max_slices=12, label_slices="all", labelled=1)
    return LocalDatastore(str(tmp_path / "ds"), extensions=["*.nii.gz"], auto_reload=False)


def test_scores_are_stored_with_the_model_version_and_recomputed_only_for_a_new_model(tmp_path, phantom_datastore):
    model = tiny_model(tmp_path / "muscle_seg.pt", 0)
    scoring = MuscleUncertaintyScoring(str(model), str(tmp_path / "no_locator.pt"), passes=2)
    unlabelled = phantom_datastore.get_unlabeled_images()
    assert len(unlabelled) == 2
    first = scoring({}, phantom_datastore)
    assert (first["scored"], first["up_to_date"]) == (2, 0)
    infos = {i: phantom_datastore.get_image_info(i)[SCORE_KEY] for i in unlabelled}
    assert all(info["model"] == model_description(model) and info["score"] > 0 for info in infos.values())
    assert SCORE_KEY not in phantom_datastore.get_image_info(phantom_datastore.get_labeled_images()[0])
    assert scoring({}, phantom_datastore)["up_to_date"] == 2
    tiny_model(model, 1)  # training published other weights
    assert scoring({}, phantom_datastore)["scored"] == 2
    assert all(phantom_datastore.get_image_info(i)[SCORE_KEY]["model"] == model_description(model) for i in unlabelled)
