"""The muscle network's training and inference plumbing, on tiny networks and volumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandWeightedCropd
from monailabel.datastore.local import LocalDatastore

from lib.infers.muscle_seg import MuscleSegInfer
from lib.trainers.muscle_seg import MuscleSegTrain
from sarcopenia_app.ct_input import InvalidCTError, check_ct_array
from sarcopenia_app.network import NetworkConfig, build_network
from sarcopenia_app.phantom import write_dataset
from sarcopenia_app.publish import publish_atomically
from sarcopenia_app.transforms import AnnotatedSliceWeightd, MaskUnannotatedSlicesd, neighbour_channels

LOCATOR = Path(__file__).resolve().parents[1] / "model" / "l3_locator.pt"
TINY = NetworkConfig(channels=(4, 8, 16), res_units=0, dropout=0.1)
PIXDIM_MM = 3.0
FAST_REQUEST = {"max_epochs": 1, "crop_px": 64, "samples_per_volume": 4, "val_split": 0.34, "dataset": "Dataset",
                "init": "scratch"}


@pytest.fixture(scope="module")
def datastore_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg_ds")
    write_dataset(out, count=3, seed=2, matrix=96, max_slices=16, label_slices="l3")
    return out


def test_neighbour_channels_stack_adjacent_slices():
    volume = torch.arange(5, dtype=torch.float32).expand(1, 2, 2, 5).clone()
    stacked = neighbour_channels(volume, 1)
    assert stacked.shape == (3, 2, 2, 5)
    assert stacked[:, 0, 0, :].tolist() == [[0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 4]]


def test_unannotated_slices_are_never_sampled():
    """Slice k of the image holds the value k; only slices 3 and 6 carry annotation. If empty
    slices counted as background, crops from them would appear."""
    image = torch.arange(10, dtype=torch.float32).expand(1, 24, 24, 10).clone()
    label = torch.zeros(1, 24, 24, 10)
    label[0, 8:14, 8:14, 3] = 1
    label[0, 2:5, 2:5, 6] = 1
    sample = Compose([AnnotatedSliceWeightd("label", "weight"),
                      RandWeightedCropd(("image", "label"), w_key="weight", spatial_size=(8, 8, 1), num_samples=60)])
    sample.set_random_state(0)
    crops = sample({"image": image, "label": label})
    assert {int(c["image"].max()) for c in crops} == {3, 6}


def test_validation_scores_only_annotated_slices():
    label = torch.zeros(2, 4, 4, 3)
    label[0] = 1
    label[:, :, :, 1] = 0
    label[1, 1:3, 1:3, 1] = 1
    label[0, :, :, 1] = 1 - label[1, :, :, 1]
    pred = torch.zeros_like(label)
    pred[1] = 1  # muscle everywhere: wrong on unannotated slices 0 and 2, which must not count
    pred[0] = 0
    masked = MaskUnannotatedSlicesd(("pred", "label"), "label")({"pred": pred, "label": label})
    assert masked["pred"][..., 0].sum() == 0 and masked["pred"][..., 2].sum() == 0
    assert masked["pred"][1, :, :, 1].sum() == 16


def test_a_few_training_steps_lower_the_loss(datastore_dir):
    task = MuscleSegTrain(str(datastore_dir / "work"), str(datastore_dir / "unused.pt"), TINY, PIXDIM_MM, "t", {})
    context = types.SimpleNamespace(request={"crop_px": 64, "samples_per_volume": 6, "lr": 3e-3})
    transforms = Compose(task.train_pre_transforms(context))
    transforms.set_random_state(1)
    datalist = LocalDatastore(str(datastore_dir), extensions=["*.nii.gz"], auto_reload=False).datalist()
    crops = [crop for item in datalist for crop in transforms(item)]
    images = torch.stack([c["image"] for c in crops])
    labels = torch.stack([c["label"] for c in crops])
    assert images.shape[1:] == (TINY.in_channels, 64, 64) and labels.sum() > 0
    torch.manual_seed(0)
    network = build_network(TINY)
    context.network = network
    optimizer = task.optimizer(types.SimpleNamespace(network=network, request=context.request))
    loss_function = task.loss_function(context)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = loss_function(network(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def _infer(task: MuscleSegInfer, image: Path, out: Path) -> np.ndarray:
    label_path, _ = task({"image": str(image), "result_extension": ".nii.gz", "device": "cpu", "region": "all"})
    return np.asarray(nib.load(label_path).dataobj)


def test_training_publishes_a_model_that_the_next_inference_loads(datastore_dir, tmp_path):
    publish = tmp_path / "muscle_seg.pt"
    task = MuscleSegTrain(str(tmp_path / "work"), str(publish), TINY, PIXDIM_MM, "t", {})
    datastore = LocalDatastore(str(datastore_dir), extensions=["*.nii.gz"], auto_reload=False)
    stats = task(dict(FAST_REQUEST), datastore)
    assert stats["epoch"] == 1 and publish.exists()
    assert not list(tmp_path.glob(".muscle_seg.pt.*.tmp"))  # no half-written leftovers

    image = sorted(datastore_dir.glob("*.nii.gz"))[0]
    infer = MuscleSegInfer(str(publish), str(LOCATOR), {"skeletal_muscle": 1}, "t")
    first = _infer(infer, image, tmp_path)
    assert first.shape == nib.load(image).shape

    state = torch.load(publish, weights_only=True)
    final_bias = [k for k in state["model"] if k.endswith("bias")][-1]
    state["model"][final_bias] = torch.tensor([-50.0, 50.0])  # now every voxel is muscle
    publish_atomically(state, publish)
    second = _infer(infer, image, tmp_path)
    body = np.asarray(nib.load(image).dataobj) > -500
    assert second[body].all() and not np.array_equal(first, second)


DDP_SCRIPT = """
import json, sys
from monailabel.datastore.local import LocalDatastore
from lib.trainers.muscle_seg import MuscleSegTrain
from sarcopenia_app.network import NetworkConfig

if __name__ == "__main__":
    data, work, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    tiny = NetworkConfig(channels=(4, 8, 16), res_units=0, dropout=0.1)
    task = MuscleSegTrain(work + "/run", work + "/ddp.pt", tiny, 3.0, "t", {})
    stats = task(request, LocalDatastore(data, extensions=["*.nii.gz"], auto_reload=False))
    print(json.dumps({"total_iterations": stats["total_iterations"]}))
"""


def two_process_training(datastore: Path, work: Path) -> subprocess.CompletedProcess:
    """Two gloo ranks training on ``datastore`` in a fresh interpreter; the model goes to work/ddp.pt."""
    script = work / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    request = {**FAST_REQUEST, "val_split": 0.0, "multi_gpu": True, "gpus": "0,1"}
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(script), str(datastore), str(work), json.dumps(request)],
                          cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
                          timeout=300)


def test_two_process_gloo_training_on_cpu(datastore_dir, tmp_path):
    """multi_gpu on a machine without GPUs: two gloo processes share the data. Run in a fresh
    interpreter, as the server runs training, so that spawned workers can import the task."""
    done = two_process_training(datastore_dir, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stderr + done.stdout
    assert "Main Worker: 0" in log and "Main Worker: 1" in log  # two spawned ranks
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    labelled = len(LocalDatastore(str(datastore_dir), extensions=["*.nii.gz"], auto_reload=False).datalist())
    assert (tmp_path / "ddp.pt").exists()
    assert stats["total_iterations"] == (labelled + 1) // 2  # each rank saw half of the volumes


def test_two_process_training_with_an_unreadable_image_fails_with_the_reason(datastore_dir, tmp_path):
    """A rank that fails takes the run down with its reason (not a hang, not a bare signal)."""
    broken = tmp_path / "datastore"
    shutil.copytree(datastore_dir, broken)
    victim = sorted(broken.glob("*.nii.gz"))[0]
    victim.write_bytes(b"not a CT at all")
    done = two_process_training(broken, tmp_path)
    assert done.returncode != 0
    assert f"could not read {victim.name} as a CT volume" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "ddp.pt").exists()


@pytest.mark.parametrize("volume, spacing, reason", [
    (np.zeros((64, 64)), (1, 1), "3D CT volume"),
    (np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(float), (1, 1, 1), "Hounsfield"),
    (np.full((64, 64, 4), -1000.0), (1, 0, 1), "spacing"),
    (np.full((64, 64, 4), np.nan), (1, 1, 1), "NaN"),
    (np.random.default_rng(0).normal(1000, 50, (64, 64, 4)), (1, 1, 1), "Hounsfield"),
    # a real CT crop around a vertebra (1st-99.5th percentile -206..941 HU) read "not CT" before
    (np.random.default_rng(0).normal(30, 70, (64, 64, 4)), (1, 1, 1), "cropped inside the body"),
])
def test_inputs_that_are_not_ct_are_refused_with_a_reason(volume, spacing, reason):
    with pytest.raises(InvalidCTError, match=reason):
        check_ct_array(volume, spacing)


def test_real_ct_passes_the_check(datastore_dir):
    image = nib.load(sorted(datastore_dir.glob("*.nii.gz"))[0])
    check_ct_array(np.asarray(image.dataobj), image.header.get_zooms())


def test_probability_map_is_on_the_input_grid_for_any_orientation():
    from sarcopenia_app.segment import MuscleModel, predict_probability

    model = MuscleModel(build_network(TINY), TINY, PIXDIM_MM)
    volume = torch.randn(1, 40, 36, 5) * 100
    affine = torch.tensor([[0.0, -0.8, 0, 10], [-0.9, 0, 0, 5], [0, 0, 2.5, -300], [0, 0, 0, 1]])
    probability = predict_probability(model, MetaTensor(volume, affine=affine))
    assert probability.shape == volume.shape
    assert torch.allclose(probability.affine.float(), affine)
    slab = predict_probability(model, MetaTensor(volume, affine=affine), z_range=(1, 3))
    assert slab[..., 0].sum() == 0 and slab[..., 4].sum() == 0 and slab[..., 1:3].sum() > 0


def test_a_deeper_network_starts_from_a_smaller_ones_weights_and_segments_any_slice_size():
    """Capacity can grow without starting over: the shared levels keep their trained tensors, and
    slices are padded to what the deeper network's halvings need (32 for six levels, not 16)."""
    from sarcopenia_app.segment import MuscleModel, predict_probability, reshaped

    torch.manual_seed(0)
    small = MuscleModel(build_network(TINY), TINY, PIXDIM_MM)
    deeper, copied = reshaped(small, {"channels": (4, 8, 16, 32, 64, 128)})
    assert deeper.config.size_divisor_px == 32 and small.config.size_divisor_px == 4
    first_conv = [name for name in small.network.state_dict() if name.endswith("weight")][0]
    assert torch.equal(deeper.network.state_dict()[first_conv], small.network.state_dict()[first_conv])
    assert 0 < copied < len(deeper.network.state_dict())
    volume = torch.randn(1, 57, 41, 3) * 100
    probability = predict_probability(deeper, MetaTensor(volume, affine=torch.diag(torch.tensor([PIXDIM_MM, PIXDIM_MM, 2.5, 1.0]))))
    assert probability.shape == volume.shape


def test_fine_tuning_rebuilds_the_shape_of_the_published_model(tmp_path):
    """`init=current` loads the published file, so the task config builds that file's network, not a
    fixed default: a deeper model can be shipped without breaking retraining from the viewer."""
    from lib.configs.muscle_seg import NETWORK, MuscleSeg
    from sarcopenia_app.segment import MuscleModel

    def trainer_network(model_dir):
        config = MuscleSeg()
        config.init("muscle_seg", str(model_dir), {}, None)
        return config.trainer()["muscle_seg"].network_config

    assert trainer_network(tmp_path) == NETWORK  # nothing published yet
    deeper = NetworkConfig(channels=(4, 8, 16, 32), res_units=1, dropout=0.1)
    torch.save(MuscleModel(build_network(deeper), deeper, PIXDIM_MM).state(), tmp_path / "muscle_seg.pt")
    assert trainer_network(tmp_path) == deeper


def test_a_training_crop_is_rounded_to_what_the_network_can_take():
    six_levels = NetworkConfig(channels=(16, 32, 64, 128, 256, 512))
    assert six_levels.fitting_crop_px(224) == 224
    assert six_levels.fitting_crop_px(200) == 224  # not a multiple of 32: the skips would not line up
    assert six_levels.fitting_crop_px(32) == 64  # one pixel at the bottom: instance norm cannot train
    assert TINY.fitting_crop_px(32) == 32


def test_flip_averaging_makes_the_prediction_mirror_with_the_scan():
    """Test-time flips average the slice and its mirror, so a mirrored scan (left and right swapped)
    gets exactly the mirrored probability, whatever the network learnt."""
    from sarcopenia_app.segment import MuscleModel, predict_probability

    torch.manual_seed(0)
    model = MuscleModel(build_network(TINY), TINY, PIXDIM_MM)
    volume = torch.randn(1, 32, 32, 3) * 200
    affine = torch.diag(torch.tensor([PIXDIM_MM, PIXDIM_MM, 2.5, 1.0]))
    plain = predict_probability(model, MetaTensor(volume, affine=affine), flip=True)
    mirrored = predict_probability(model, MetaTensor(volume.flip(1), affine=affine), flip=True)
    assert torch.allclose(mirrored.as_tensor().flip(1), plain.as_tensor(), atol=1e-5)
    assert not torch.allclose(predict_probability(model, MetaTensor(volume, affine=affine)).as_tensor(),
                              plain.as_tensor(), atol=1e-5)


def test_chunked_inference_matches_one_pass_with_the_shipped_model(datastore_dir):
    """Long scans go through in chunks of slices (bounded memory); the chunk edges must not show."""
    from sarcopenia_app.segment import load_model, predict_mask

    image = nib.load(sorted(datastore_dir.glob("*.nii.gz"))[0])
    volume = MetaTensor(torch.from_numpy(np.asarray(image.dataobj, np.float32))[None], affine=torch.from_numpy(image.affine))
    model = load_model(Path(__file__).resolve().parents[1] / "model" / "muscle_seg.pt")
    one_pass = predict_mask(model, volume, chunk_slices=volume.shape[-1])
    chunked = predict_mask(model, volume, chunk_slices=3)
    assert one_pass.sum() > 1000
    agreement = 2 * (one_pass & chunked).sum() / (one_pass.sum() + chunked.sum())
    assert agreement > 0.98


def test_training_can_start_from_a_pretrained_encoder(datastore_dir, tmp_path):
    """Transfer learning: matching tensors come from the encoder file, the network really changes."""
    donor = build_network(TINY)
    for parameter in donor.parameters():
        torch.nn.init.constant_(parameter, 0.5)
    encoder = tmp_path / "encoder.pt"
    torch.save({"model": donor.state_dict()}, encoder)
    task = MuscleSegTrain(str(tmp_path / "work"), str(tmp_path / "m.pt"), TINY, PIXDIM_MM, "t", {}, str(encoder))
    context = types.SimpleNamespace(request={"init": "encoder"})
    network = task.network(context)
    assert all(torch.all(p == 0.5) for p in network.parameters())
    with pytest.raises(FileNotFoundError):
        task.network(types.SimpleNamespace(request={"init": "encoder", "encoder_path": str(tmp_path / "none.pt")}))
