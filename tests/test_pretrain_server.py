"""The pretraining guard and resumption through the real server's REST API.

The server runs a copy of the app (servers.app_copy) whose model folder is temporary, so the
trainings that `POST /train/` starts never touch the repository's model/ files.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterator, List, NamedTuple

import pytest
import requests
import torch
from servers import app_copy, direct_http, offline_env, running_server
from test_server import write_datastore

PRETRAIN = "muscle_seg_pretrain"
TASK_TIMEOUT_S = 240.0
FAST_PRETRAIN = {"crop_px": 32, "samples_per_volume": 2, "volumes_per_batch": 2, "checkpoint_every_steps": 1,
                 "device": "cpu"}


class App(NamedTuple):
    url: str
    http: requests.Session
    model_dir: Path
    images: int

    @property
    def checkpoint(self) -> Path:
        return self.model_dir / PRETRAIN / "checkpoint.pt"

    @property
    def encoder(self) -> Path:
        return self.model_dir / "muscle_seg_encoder.pt"


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("pretrain_server")
    app_dir = app_copy(tmp)
    shutil.rmtree(app_dir / "model" / PRETRAIN, ignore_errors=True)  # whatever the checkout holds
    (app_dir / "model" / "muscle_seg_encoder.pt").unlink(missing_ok=True)
    image_ids, _ = write_datastore(tmp / "studies")
    # no re-scoring after each training: this module is about training tasks, and a scoring run
    # still busy at the end would hold up the server's shutdown on a loaded machine
    env = {**offline_env(tmp), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    with running_server(app_dir, str(tmp / "studies"), env, tmp, ("models", "muscle_seg")) as url:
        yield App(url, direct_http(), app_dir / "model", len(image_ids))


def train_tasks(app: App) -> List[dict]:
    response = app.http.get(f"{app.url}/train/", params={"all": "true"}, timeout=10)
    return response.json() if response.status_code == 200 else []


def wait_until_finished(app: App, count: int) -> List[dict]:
    """The first `count` train tasks, once none of them is waiting or running."""
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        tasks = train_tasks(app)[:count]
        if len(tasks) == count and all(t["status"] in ("DONE", "ERROR", "STOPPED") for t in tasks):
            return tasks
        time.sleep(0.5)
    pytest.fail(f"train tasks not finished within {TASK_TIMEOUT_S} s: {train_tasks(app)}")


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"]) if path.exists() else 0


def test_update_model_for_every_trainer_does_not_start_pretraining(app):
    """What OHIF's "update model" button sends: POST /train/ with each trainer's config from /info/."""
    info = app.http.get(f"{app.url}/info/").json()
    trainers, stats_before = info["trainers"], info["train_stats"].get("muscle_seg")
    assert set(trainers) == {"muscle_seg", PRETRAIN}
    params = {name: {k: (v[0] if isinstance(v, list) else v) for k, v in t["config"].items()}
              for name, t in trainers.items()}
    params["muscle_seg"].update(max_epochs=1, init="scratch", crop_px=64, samples_per_volume=2, val_split=0.0)
    response = app.http.post(f"{app.url}/train/", json=params, timeout=30)
    assert response.status_code == 200 and set(response.json()) == {"muscle_seg", PRETRAIN}

    tasks = {t["request"]["model"]: t for t in wait_until_finished(app, 2)}
    assert tasks["muscle_seg"]["status"] == "DONE"
    stats_after = app.http.get(f"{app.url}/info/").json()["train_stats"].get("muscle_seg")
    assert stats_after and stats_after != stats_before  # the other trainer did run (a new run's stats)
    assert tasks[PRETRAIN]["status"] == "DONE"
    assert any("skipped" in line for line in tasks[PRETRAIN]["details"]), tasks[PRETRAIN]["details"]
    assert not app.checkpoint.exists() and not app.encoder.exists()


def test_pretraining_by_name_without_confirmation_is_skipped(app):
    response = app.http.post(f"{app.url}/train/{PRETRAIN}", json={"max_epochs": 1, **FAST_PRETRAIN}, timeout=30)
    assert response.status_code == 200
    task = wait_until_finished(app, 3)[-1]
    assert task["status"] == "DONE" and any("skipped" in line for line in task["details"])
    assert not app.checkpoint.exists()


def test_a_stopped_pretraining_keeps_its_checkpoint_and_the_next_run_continues_it(app):
    confirmed = {"confirm": PRETRAIN, **FAST_PRETRAIN}
    response = app.http.post(f"{app.url}/train/{PRETRAIN}", json={**confirmed, "max_epochs": 10000}, timeout=30)
    assert response.status_code == 200
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while checkpoint_step(app.checkpoint) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    stopped = app.http.delete(f"{app.url}/train/", timeout=30).json()
    assert stopped["status"] == "STOPPED"
    stopped_at = checkpoint_step(app.checkpoint)
    history = torch.load(app.checkpoint, weights_only=True)["history"]
    assert stopped_at >= 3 and app.encoder.exists()  # written with every checkpoint

    steps_per_epoch = -(-app.images // FAST_PRETRAIN["volumes_per_batch"])
    epochs = stopped_at // steps_per_epoch + 1
    response = app.http.post(f"{app.url}/train/{PRETRAIN}", json={**confirmed, "max_epochs": epochs}, timeout=30)
    assert response.status_code == 200
    task = wait_until_finished(app, 5)[-1]
    assert task["status"] == "DONE", task["details"]
    final = torch.load(app.checkpoint, weights_only=True)
    assert final["step"] == epochs * steps_per_epoch
    assert final["history"][:len(history)] == history  # continued, not started again
    stats = app.http.get(f"{app.url}/info/").json()["train_stats"][PRETRAIN]
    assert stats["step"] == final["step"]
