"""Self-supervised pretraining: it learns, it hands its weights to the segmentation network, it
continues after a stop or a kill, and its MONAI Label task runs only when confirmed by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from monai.losses import ContrastiveLoss
from monailabel.datastore.local import LocalDatastore

from lib.trainers.muscle_seg import MuscleSegTrain
from lib.trainers.muscle_seg_pretrain import MuscleSegPretrain
from sarcopenia_app.network import NetworkConfig, build_network
from sarcopenia_app.phantom import write_dataset
from sarcopenia_app.pretrain import PretrainSettings, pretrain, ssl_losses
from sarcopenia_app.pretrain.loop import sample_transforms
from sarcopenia_app.pretrain.model import SelfSupervisedNet
from sarcopenia_app.segment import MuscleModel

REPO = Path(__file__).resolve().parents[1]
TINY = NetworkConfig(channels=(4, 8, 16), res_units=0, dropout=0.1)
PIXDIM_MM = 3.0
FAST = dict(crop_px=32, samples_per_volume=4, volumes_per_batch=2, cache_rate=1.0, seed=0)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unlabelled")
    write_dataset(out, count=3, seed=5900, matrix=96, max_slices=16, label_slices="none")
    return out


def images_of(folder: Path) -> list:
    return sorted(str(p) for p in folder.glob("*.nii.gz"))


def fixed_batch(images: list, seed: int) -> dict:
    """Two volumes' worth of view pairs, drawn once with a fixed random state."""
    transforms = sample_transforms(TINY, PIXDIM_MM, PretrainSettings(**FAST))
    transforms.set_random_state(seed=seed)
    samples = [sample for path in images[:2] for sample in transforms({"image": path})]
    return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in samples[0] if key != "image"}


def evaluate(model: SelfSupervisedNet, batch: dict) -> dict:
    model.eval()
    with torch.no_grad():
        losses = ssl_losses(model, batch, ContrastiveLoss(temperature=0.5), contrastive_weight=0.1)
    return {name: float(value) for name, value in losses.items()}


def test_a_few_pretraining_steps_lower_the_self_supervised_loss(unlabelled, tmp_path):
    images = images_of(unlabelled)
    batch = fixed_batch(images, seed=123)
    torch.manual_seed(0)  # pretrain(seed=0) starts from these very weights
    before = evaluate(SelfSupervisedNet(TINY), batch)
    summary = pretrain(images, TINY, PIXDIM_MM, tmp_path / "ck.pt", tmp_path / "enc.pt",
                       PretrainSettings(max_epochs=15, lr=3e-3, checkpoint_every_steps=10, **FAST))
    assert summary["step"] == 15 * 2  # 3 volumes, 2 per batch
    trained = SelfSupervisedNet(TINY)
    trained.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True)["model"])
    after = evaluate(trained, batch)
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after["reconstruction"] < 0.8 * before["reconstruction"], (before, after)


def test_the_saved_encoder_really_changes_the_segmentation_network(unlabelled, tmp_path):
    """Every tensor that fits is handed over (not just loaded without error): the network the
    train task builds with init=encoder holds the pretrained values, which differ from both a
    fresh network and the pretraining's own starting point; only the output layer is skipped."""
    summary = pretrain(images_of(unlabelled), TINY, PIXDIM_MM, tmp_path / "ck.pt", tmp_path / "enc.pt",
                       PretrainSettings(max_epochs=2, checkpoint_every_steps=100, **FAST))
    encoder = torch.load(tmp_path / "enc.pt", weights_only=True)
    twin = torch.load(tmp_path / "ck.pt", weights_only=True)["model"]
    segmentation_keys = build_network(TINY).state_dict()
    fitting = {k[len("twin."):] for k, v in twin.items()
               if k.startswith("twin.") and k[len("twin."):] in segmentation_keys
               and segmentation_keys[k[len("twin."):]].shape == v.shape}
    assert set(encoder["model"]) == fitting and len(fitting) > 0
    assert encoder["skipped"] == summary["skipped"] and encoder["skipped"]
    assert all(k.startswith("model.2.") for k in encoder["skipped"])  # the top up-layer: 3 channels, not 2

    task = MuscleSegTrain(str(tmp_path / "work"), str(tmp_path / "m.pt"), TINY, PIXDIM_MM, "t", {},
                          str(tmp_path / "enc.pt"))
    torch.manual_seed(7)
    network = task.network(types.SimpleNamespace(request={"init": "encoder"})).state_dict()
    torch.manual_seed(7)
    fresh = build_network(TINY).state_dict()
    torch.manual_seed(0)
    start = SelfSupervisedNet(TINY).twin.state_dict()
    for key, value in encoder["model"].items():
        assert torch.equal(network[key], value)
    weights = [k for k in encoder["model"] if k.endswith("weight")]
    assert all(not torch.equal(network[k], fresh[k]) for k in weights)
    assert all(not torch.equal(network[k], start[k]) for k in weights)  # pretraining moved them
    for key in set(network) - set(encoder["model"]):
        assert torch.equal(network[key], fresh[key])  # the rest keeps its random start


def test_a_resumed_run_continues_from_the_checkpoint(unlabelled, tmp_path):
    images = images_of(unlabelled)
    paths = (tmp_path / "ck.pt", tmp_path / "enc.pt")
    first = pretrain(images, TINY, PIXDIM_MM, *paths, PretrainSettings(max_epochs=1, checkpoint_every_steps=1, **FAST))
    second = pretrain(images, TINY, PIXDIM_MM, *paths, PretrainSettings(max_epochs=2, checkpoint_every_steps=1, **FAST))
    assert first["resumed_from"] is None and first["step"] == 2
    assert second["resumed_from"] == 2 and second["step"] == 4
    assert second["history"][:2] == first["history"]
    again = pretrain(images, TINY, PIXDIM_MM, *paths, PretrainSettings(max_epochs=2, restart=True, **FAST))
    assert again["resumed_from"] is None
    with pytest.raises(ValueError, match="checkpoint"):
        pretrain(images, NetworkConfig(channels=(4, 8, 32), res_units=0), PIXDIM_MM, *paths,
                 PretrainSettings(max_epochs=1, **FAST))


def test_a_killed_cli_run_resumes_from_its_last_checkpoint(unlabelled, tmp_path):
    """`sarcopenia pretrain` killed with SIGKILL (what DELETE /train/ does to the server's task)
    leaves a complete checkpoint, and the next run continues from it."""
    like = tmp_path / "like.pt"
    torch.save(MuscleModel(build_network(TINY), TINY, PIXDIM_MM).state(), like)
    command = [sys.executable, "-m", "sarcopenia_app.cli", "pretrain", "--images", str(unlabelled),
               "--network-from", str(like), "--work", str(tmp_path / "work"), "--crop-px", "32",
               "--samples-per-volume", "2", "--checkpoint-every-steps", "1", "--cache-rate", "1"]
    checkpoint = tmp_path / "work" / "checkpoint.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([*command, "--max-epochs", "1000"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (checkpoint.exists() and _step(checkpoint) >= 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = _step(checkpoint)
    assert stopped_at >= 3
    done = subprocess.run([*command, "--max-epochs", str(stopped_at // 2 + 1)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == stopped_at
    assert summary["step"] == 2 * (stopped_at // 2 + 1)
    assert (tmp_path / "work" / "muscle_seg_encoder.pt").exists()


def _step(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["step"])
    except (EOFError, RuntimeError):  # never expected: files are replaced atomically
        raise AssertionError(f"{checkpoint} is incomplete")


def test_the_pretrain_task_runs_only_when_confirmed_by_name(unlabelled, tmp_path):
    task = MuscleSegPretrain("muscle_seg_pretrain", str(tmp_path / "ck.pt"), str(tmp_path / "enc.pt"), TINY,
                             PIXDIM_MM, "t")
    datastore = LocalDatastore(str(unlabelled), extensions=["*.nii.gz"], auto_reload=False)
    fast = {"max_epochs": 1, "crop_px": 32, "samples_per_volume": 2}
    for request in ({"model": "muscle_seg_pretrain", **fast}, {"confirm": True, **fast},
                    {"confirm": "muscle_seg", **fast}, {**task.config(), "model": "muscle_seg_pretrain"}):
        assert "skipped" in task(request, datastore)
    assert not (tmp_path / "ck.pt").exists() and not (tmp_path / "enc.pt").exists()
    result = task({"confirm": "muscle_seg_pretrain", **fast}, datastore)
    assert result["step"] == 2 and (tmp_path / "enc.pt").exists()
    assert task.stats()["step"] == 2
