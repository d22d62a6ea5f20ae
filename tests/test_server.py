"""The real MONAI Label server with this app, started once on a small temporary datastore,
offline (see servers.py)."""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import nibabel as nib
import numpy as np
import pytest
import requests
from servers import REPO, direct_http, offline_env, running_server
from synthetic_abdomen import abdomen_slice

from sarcopenia_app.phantom import write_dataset

IMAGE_IDS = ("case_a", "case_b", "case_c")
LABELLED_IDS = ("case_a",)
SLICE_COUNT = 4
PIXEL_SPACING_MM = (0.9, 0.8)
SLICE_THICKNESS_MM = 5.0


class Server(NamedTuple):
    url: str
    http: requests.Session
    studies: Path
    env: dict
    network_log: Path
    start_s: float
    image_ids: tuple
    labelled_ids: tuple


def write_datastore(studies: Path) -> tuple:
    """Stacks of the synthetic test slice (the first one labelled) plus two small phantom cases
    as `make serve` makes them (labels on a few L3 slices). Returns (image ids, labelled ids)."""
    case = abdomen_slice(PIXEL_SPACING_MM)
    affine = np.diag([*PIXEL_SPACING_MM, SLICE_THICKNESS_MM, 1.0])
    volume_hu = np.repeat(case.hu[:, :, None], SLICE_COUNT, axis=2).astype(np.int16)
    label = np.repeat(case.muscle[:, :, None], SLICE_COUNT, axis=2).astype(np.uint8)
    (studies / "labels" / "final").mkdir(parents=True)
    for image_id in IMAGE_IDS:
        nib.save(nib.Nifti1Image(volume_hu, affine), studies / f"{image_id}.nii.gz")
    for image_id in LABELLED_IDS:
        nib.save(nib.Nifti1Image(label, affine), studies / "labels" / "final" / f"{image_id}.nii.gz")
    records = write_dataset(studies, count=2, seed=2, matrix=96, max_slices=60, label_slices="l3", labelled=1)
    image_ids = IMAGE_IDS + tuple(r["id"] for r in records)
    labelled_ids = LABELLED_IDS + tuple(r["id"] for r in records if "label" in r["files"])
    return image_ids, labelled_ids


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    studies = tmp / "studies"
    image_ids, labelled_ids = write_datastore(studies)
    env = offline_env(tmp)
    started = time.monotonic()
    with running_server(REPO, str(studies), env, tmp) as url:
        yield Server(url, direct_http(), studies, env, tmp / "network-attempts.log", time.monotonic() - started,
                     image_ids, labelled_ids)


def test_info_lists_the_baseline_model_and_strategies(server):
    info = server.http.get(f"{server.url}/info/").json()
    print(f"server start to /info/: {server.start_s:.1f} s")
    model = info["models"]["muscle_threshold"]
    assert model["type"] == "segmentation"
    assert model["labels"] == {"skeletal_muscle": 1}
    assert {"random", "first"} <= set(info["strategies"])


def test_datastore_stats_count_images_and_labelled_images(server):
    stats = server.http.get(f"{server.url}/datastore/", params={"output": "stats"}).json()
    assert stats["total"] == len(server.image_ids) == 5
    assert stats["completed"] == len(server.labelled_ids) >= 2
    listed = server.http.get(f"{server.url}/datastore/", params={"output": "all"}).json()
    assert set(listed["objects"]) == set(server.image_ids)


def test_first_strategy_serves_the_first_unlabelled_image(server):
    sample = server.http.post(f"{server.url}/activelearning/first", json={}).json()
    assert sample["id"] == sorted(set(server.image_ids) - set(server.labelled_ids))[0]


def test_infer_returns_the_muscle_mask_on_the_image_grid(server, tmp_path):
    image_id = IMAGE_IDS[1]
    response = server.http.post(
        f"{server.url}/infer/muscle_threshold", params={"image": image_id, "output": "image"}, timeout=120
    )
    assert response.status_code == 200, response.text
    result_path = tmp_path / "result.nii.gz"
    result_path.write_bytes(response.content)

    result = nib.load(result_path)
    image = nib.load(server.studies / f"{image_id}.nii.gz")
    mask = np.asarray(result.dataobj)
    assert mask.shape == image.shape
    np.testing.assert_allclose(result.affine, image.affine, atol=1e-4)
    expected = abdomen_slice(PIXEL_SPACING_MM).muscle
    for k in range(SLICE_COUNT):
        assert np.array_equal(mask[:, :, k] == 1, expected)


def test_the_offline_guard_catches_network_access(server, tmp_path):
    """Without this, an empty log below could also mean a guard that never ran."""
    probe_log = tmp_path / "probe-attempts.log"
    dead_proxy_port = server.env["DEAD_PROXY_PORT"]  # loopback only: no packet leaves the machine
    probe = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {dead_proxy_port}), timeout=1)\n"
             "except OSError:\n    pass")
    subprocess.run([sys.executable, "-c", probe], env={**server.env, "NETWORK_ATTEMPTS_LOG": str(probe_log)}, check=True)
    assert dead_proxy_port in probe_log.read_text()


def test_nothing_tried_to_reach_the_network(server):
    attempts = server.network_log.read_text().strip() if server.network_log.exists() else ""
    assert attempts == "", f"network access attempted:\n{attempts}"


@pytest.mark.parametrize("name, content, reason", [
    ("scan.nii.gz", b"this is not a NIfTI file", "as a CT volume"),
    ("slice.nii.gz", None, "3D CT volume"),
    ("mr.nii.gz", "mr", "Hounsfield"),
])
def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(server, tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:  # a single 2D image
        nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), path)
    elif content == "mr":  # MR-like intensities: no air near -1000 HU
        mr = np.random.default_rng(0).integers(0, 1200, (64, 64, 8)).astype(np.int16)
        nib.save(nib.Nifti1Image(mr, np.eye(4)), path)
    else:
        path.write_bytes(content)
    with open(path, "rb") as f:
        response = server.http.post(f"{server.url}/infer/muscle_threshold", files={"file": (name, f)}, timeout=60)
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    assert server.http.get(f"{server.url}/info/", timeout=10).status_code == 200
    stats = server.http.get(f"{server.url}/datastore/", params={"output": "stats"}).json()
    assert stats["total"] == len(server.image_ids)


def test_infer_returns_l3_measurements_and_keeps_them_in_the_datastore(server):
    image_id = server.labelled_ids[-1]  # a phantom case with L3
    request = {"sex": "M", "height_m": 1.8, "weight_kg": 85, "cutoffs": "martin2013"}
    response = server.http.post(f"{server.url}/infer/muscle_seg", params={"image": image_id, "output": "json"},
                                data={"params": json.dumps(request)}, timeout=300)
    assert response.status_code == 200, response.text
    measurements = response.json()["measurements"]
    truth = json.loads((server.studies / "truth" / f"{image_id}.json").read_text())
    first, last = truth["l3_index_range"]
    assert measurements["has_l3"] and first <= measurements["l3_slice_index"] <= last
    assert measurements["cutoffs"] == "martin2013" and measurements["bmi"] == pytest.approx(85 / 1.8 ** 2, abs=0.05)
    assert measurements["sma_cm2"] > 0 and measurements["sarcopenia"] in (True, False)
    info = server.http.get(f"{server.url}/datastore/image/info", params={"image": image_id}).json()
    assert info["sarcopenia"]["l3_slice_index"] == measurements["l3_slice_index"]


def test_bad_measurement_option_is_a_clear_422(server):
    response = server.http.post(f"{server.url}/infer/muscle_seg", params={"image": server.image_ids[0], "output": "json"},
                                data={"params": json.dumps({"height_m": 175})}, timeout=300)
    assert response.status_code == 422 and "check the units" in response.text
    assert server.http.get(f"{server.url}/info/").status_code == 200
