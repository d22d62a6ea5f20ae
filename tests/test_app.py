"""The app object as the server builds it, also in every train/scoring subprocess."""

import time
from pathlib import Path

import pytest
from monailabel.config import settings
from monailabel.utils.others.class_utils import get_class_of_subclass_from_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def build_app(tmp_path, monkeypatch):
    """Builds the app from main.py the way the server loads it, on an empty datastore."""
    monkeypatch.setattr(settings, "MONAI_LABEL_SESSIONS", False)  # would write under $HOME
    app_class = get_class_of_subclass_from_file("main", str(REPO / "main.py"), "MONAILabelApp")
    studies = tmp_path / "studies"
    studies.mkdir()

    def build(**conf: str):
        return app_class(str(REPO), str(studies), conf)

    return build


def test_every_model_is_served_by_default(build_app):
    info = build_app().info()
    assert "muscle_threshold" in info["models"]
    # the network is listed once its model file exists; its trainer always is
    assert ("muscle_seg" in info["models"]) == (REPO / "model" / "muscle_seg.pt").exists()
    assert set(info["trainers"]) == {"muscle_seg", "muscle_seg_pretrain"}  # pretraining: see test_pretrain_server
    assert {"random", "first"} <= set(info["strategies"])


def test_models_are_selected_by_name(build_app):
    assert set(build_app(models=" muscle_threshold ").info()["models"]) == {"muscle_threshold"}


def test_an_unknown_model_is_refused_with_the_choices(build_app):
    with pytest.raises(ValueError, match="choose from: all, muscle_seg, muscle_threshold"):
        build_app(models="muscle_threshold,no_such_model")


def test_building_the_app_again_is_cheap(build_app):
    build_app()
    start = time.monotonic()
    build_app()
    assert time.monotonic() - start < 2.0
