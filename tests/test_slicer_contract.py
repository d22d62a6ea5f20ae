"""3D Slicer's MONAILabel module, call for call, through MONAI Label's own Python client,
against the running server on a local folder and on Orthanc:

GET /info/ -> POST /activelearning/<strategy> -> GET /datastore/image?image= ->
POST /infer/<model>?image= (result_extension .nrrd, result_dtype uint8) ->
PUT /datastore/label?image= with label_info -> GET /train/?check_if_running=true ->
POST /train/<model>; then the label counts and training ran on it.
"""

import re
import time
from pathlib import Path

import nrrd
import numpy as np
import pytest
from monailabel.client import MONAILabelClient
from conftest import Stack
from monailabel.client.client import MONAILabelUtils
from pydicom.dataset import Dataset

# The rule-based model always infers (no weights needed); the network is the one that trains.
INFER_MODEL, TRAIN_MODEL = "muscle_threshold", "muscle_seg"
STRATEGY = "first"
TRAIN_TIMEOUT_S = 240
FINISHED = ("DONE", "ERROR", "STOPPED")  # the other states: SUBMITTED, RUNNING
# One tiny epoch: the contract is that training runs on the saved label, not that it learns.
TINY_TRAINING = {"max_epochs": 1, "crop_px": 64, "samples_per_volume": 1, "val_split": 0.0, "device": "cpu",
                 "tracking": "None", "init": "current"}


@pytest.fixture(params=["local", "orthanc"])
def stack(request):
    if request.param == "local":
        return request.getfixturevalue("local_stack")
    return request.getfixturevalue("pacs_stack").stack


def wait_for_training(client: MONAILabelClient) -> dict:
    """The finished task. Slicer polls ``check_if_running``, which says False for a moment
    after the start (the subprocess is not registered yet), so poll the task's status."""
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while (task := client.train_status())["status"] not in FINISHED:
        assert time.monotonic() < deadline, f"training still running after {TRAIN_TIMEOUT_S} s"
        time.sleep(1)
    return task


def assert_final_seg_in_pacs(stack: Stack, image_id: str, segment_names: list) -> None:
    """The label went back to the PACS as a SEG of the image's series, named after our labels."""
    segs = stack.http.get(f"{stack.dicomweb}/series", params={"Modality": "SEG"}).json()
    finals = [s for s in segs if s.get("0008103E", {}).get("Value", [""])[0] == "MONAI Label final label"]
    assert len(finals) == 1, segs
    study, series = finals[0]["0020000D"]["Value"][0], finals[0]["0020000E"]["Value"][0]
    meta = Dataset.from_json(stack.http.get(f"{stack.dicomweb}/studies/{study}/series/{series}/metadata").json()[0])
    assert meta.ReferencedSeriesSequence[0].SeriesInstanceUID == image_id
    assert [segment.SegmentLabel for segment in meta.SegmentSequence] == segment_names


def test_slicer_loop_labels_an_image_and_trains_on_it(stack, tmp_path):
    client = MONAILabelClient(stack.url, tmpdir=str(tmp_path))

    info = client.info()
    assert INFER_MODEL in info["models"] and TRAIN_MODEL in info["trainers"] and STRATEGY in info["strategies"]
    label_names = info["models"][INFER_MODEL]["labels"]

    sample = client.next_sample(STRATEGY, {})
    image_id = sample["id"]
    assert image_id in stack.image_ids

    status, image_bytes, _, _ = MONAILabelUtils.http_method("GET", stack.url, f"/datastore/image?image={image_id}")
    assert status == 200 and len(image_bytes) > 1000

    label_path, params = client.infer(INFER_MODEL, image_id, {"result_extension": ".nrrd", "result_dtype": "uint8"})
    assert Path(label_path).suffix == ".nrrd"
    proposal, header = nrrd.read(label_path)
    assert proposal.dtype == np.uint8 and set(np.unique(proposal)) <= {0, 1} and proposal.any()
    assert params["label_names"] == label_names

    labelled_before = stack.http.get(f"{stack.url}/datastore/", params={"output": "stats"}).json()["completed"]
    label_info = [{"name": name, "idx": value} for name, value in label_names.items()]
    saved = client.save_label(image_id, label_path, tag="final", params={"label_info": label_info})
    assert saved["image"] == image_id

    if stack.dicomweb:
        assert_final_seg_in_pacs(stack, image_id, list(label_names))

    datastore = stack.http.get(f"{stack.url}/datastore/", params={"output": "stats"}).json()
    assert datastore["completed"] == labelled_before + 1, datastore
    assert client.next_sample(STRATEGY, {})["id"] != image_id  # a labelled image is not served again

    assert client.train_status(check_if_running=True) is False
    client.train_start(TRAIN_MODEL, TINY_TRAINING)
    result = wait_for_training(client)
    log = "\n".join(result.get("details", []))
    assert result["status"] == "DONE", log[-3000:]
    # every labelled image, the one just saved included
    assert re.search(rf"Records for Training: {datastore['completed']}\b", log), log[-3000:]
    assert client.info()["train_stats"][TRAIN_MODEL]["total_epochs"] == 1
