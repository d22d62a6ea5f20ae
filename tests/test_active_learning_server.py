"""Active learning through the real server's REST API: scores against the published model, two
annotators in a row, and the rescore at the end of training when scoring is busy (MONAI Label
0.8.5 drops that request; lib/scoring/refresh.py queues it).

The server runs a copy of the app (servers.app_copy): training publishes into a temporary model
folder, never over the repository's model/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, NamedTuple

import pytest
import requests
from servers import app_copy, direct_http, offline_env, running_server

from sarcopenia_app.analysis import model_description
from sarcopenia_app.phantom import write_dataset
from sarcopenia_app.uncertainty import SCORE_KEY

TIMEOUT_S = 240.0
SCORING = "muscle_uncertainty"
# a second --conf pair after the first (servers.running_server puts "--conf" before the first only)
CONF = ("models", "muscle_seg", "--conf", "uncertainty_passes", "2")


class AlServer(NamedTuple):
    url: str
    http: requests.Session
    model: Path
    unlabelled: List[str]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[AlServer]:
    tmp = tmp_path_factory.mktemp("active_learning")
    app = app_copy(tmp)
    records = write_dataset(tmp / "studies", count=3, seed=43, matrix=48, max_slices=5, label_slices="all",
                            labelled=1)
    unlabelled = [r["id"] for r in records if "label" not in r["files"]]
    with running_server(app, str(tmp / "studies"), offline_env(tmp), tmp, CONF) as url:
        yield AlServer(url, direct_http(), app / "model" / "muscle_seg.pt", unlabelled)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"not within {timeout_s} s: {what}")


def scores(server: AlServer) -> Dict[str, dict]:
    infos = {i: server.http.get(f"{server.url}/datastore/image/info", params={"image": i}, timeout=10).json()
             for i in server.unlabelled}
    return {i: info.get(SCORE_KEY) or {} for i, info in infos.items()}


def scored_with(server: AlServer, version: str) -> bool:
    return all(score.get("model") == version for score in scores(server).values())


def scoring_tasks(server: AlServer) -> List[dict]:
    response = server.http.get(f"{server.url}/scoring/", params={"all": "true"}, timeout=10)
    return response.json() if response.status_code == 200 else []


def scoring_idle(server: AlServer) -> bool:
    return all(task["status"] not in ("SUBMITTED", "RUNNING") for task in scoring_tasks(server))


def test_every_unlabelled_image_is_scored_against_the_published_model(server):
    version = model_description(server.model)
    wait_for(lambda: scored_with(server, version), f"start-up scores against {version}")
    for score in scores(server).values():
        assert score["score"] > 0 and score["passes"] == 2


def test_two_annotators_in_a_row_get_different_unlabelled_images(server):
    first = server.http.post(f"{server.url}/activelearning/uncertain", json={"client_id": "ann1"}, timeout=30).json()
    second = server.http.post(f"{server.url}/activelearning/uncertain", json={"client_id": "ann2"}, timeout=30).json()
    assert {first["id"], second["id"]} == set(server.unlabelled)


def test_scores_are_refreshed_after_training_even_when_scoring_runs_as_it_ends(server):
    wait_for(lambda: scoring_idle(server), "scoring idle before the test")
    before = model_description(server.model)
    slow = server.http.post(f"{server.url}/scoring/{SCORING}", json={"force": True, "passes": 100000}, timeout=30)
    assert slow.status_code == 200, slow.text
    training = server.http.post(f"{server.url}/train/muscle_seg", timeout=30, json={
        "max_epochs": 1, "val_split": 0.0, "crop_px": 48, "samples_per_volume": 1, "init": "current",
        "dataset": "Dataset"})
    assert training.status_code == 200, training.text
    wait_for(lambda: server.http.get(f"{server.url}/train/", timeout=10).json()["status"] in ("DONE", "ERROR"),
             "training finished")
    assert server.http.get(f"{server.url}/train/", timeout=10).json()["status"] == "DONE"
    after = model_description(server.model)
    assert after != before, "training published no new model"
    running = server.http.get(f"{server.url}/scoring/", params={"check_if_running": "true"}, timeout=10)
    assert running.status_code == 200, "precondition: the slow scoring must still run when training ends"
    assert server.http.delete(f"{server.url}/scoring/", timeout=30).status_code == 200
    wait_for(lambda: scored_with(server, after), f"scores against the trained model {after}")
