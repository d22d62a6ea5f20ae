"""SIGKILL the real server (and its training subprocess) at the worst moments, restart it, and
check what a power cut or the OOM killer would leave behind.

    nice -n 10 .venv/bin/python benchmarks/kill_server.py            # every scenario, once each
    nice -n 10 .venv/bin/python benchmarks/kill_server.py --rounds 3 --out /tmp/kills.json

Training (``POST /train/muscle_seg``, validation off so that every epoch publishes): killed a few
seconds into the run, as soon as the hidden temporary file of a publish appears, and as soon as
the published file has been replaced. After each kill ``model/muscle_seg.pt`` must be the previous
file byte for byte or a complete new one (``torch.load(weights_only=True)`` with weights), every
label file must be unchanged, and the restarted server must answer an inference with it.

Label upload (``PUT /datastore/label`` of a 52 MB uncompressed label over an existing one): killed
half-way through the request body, as soon as the temporary file appears in ``labels/final``, and
as soon as the label file has been replaced. The label must then load and be the old or the new
one, never truncated, and ``datastore_v2.json`` must load (the restarted server lists the image).

Runs on a copy of the app (tests/servers.py ``app_copy``): model/ in the repository is never
touched. Exits 1 if any round breaks a rule. Slow (a server start per round): not in tests/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from servers import app_copy, direct_http, kill_group, offline_env, start_server, stop  # noqa: E402

from sarcopenia_app.phantom import write_dataset  # noqa: E402

CONF = ("models", "muscle_seg")
TRAIN_REQUEST = {"max_epochs": 50, "crop_px": 64, "samples_per_volume": 2, "val_split": 0.0, "dataset": "Dataset",
                 "init": "current", "lr": 1e-5}
BIG_SHAPE = (512, 512, 200)  # 52 MB of uint8 label, uncompressed
BIG_ID = "big_case"
POLL_S = 0.001


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def label_hashes(studies: Path) -> Dict[str, str]:
    return {str(p.relative_to(studies)): sha256(p) for p in sorted((studies / "labels").rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Polls every millisecond: the kill must land inside a write that lasts a few ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_S)
    return False


def temp_file_in(folder: Path, name: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(f".{name}.*.tmp"))


def replaced(path: Path) -> Callable[[], bool]:
    inode = path.stat().st_ino
    return lambda: path.exists() and path.stat().st_ino != inode


# ---- training --------------------------------------------------------------------------------
def model_outcome(model: Path, before: str) -> Dict[str, object]:
    """'old' (same bytes) or 'new' (a complete checkpoint); raises if it is neither."""
    digest = sha256(model)
    if digest == before:
        return {"model": "old", "sha256": digest}
    state = torch.load(model, map_location="cpu", weights_only=True)
    assert state["model"] and all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    return {"model": "new", "sha256": digest, "epoch": state.get("epoch")}


def kill_during_training(workdir: Path, moment: str) -> Dict[str, object]:
    app, studies, env, image = setup(workdir)
    model = app / "model" / "muscle_seg.pt"
    before_model, before_labels = sha256(model), label_hashes(studies)
    process, url = start_server(app, str(studies), env, workdir, CONF)
    http = direct_http()
    started = http.post(f"{url}/train/muscle_seg", json=TRAIN_REQUEST, timeout=60)
    assert started.status_code == 200, started.text
    t0 = time.monotonic()
    if moment == "mid_run":
        time.sleep(20.0)
        hit = True
    elif moment == "publish_temp_file":
        hit = wait_until(temp_file_in(model.parent, model.name), 300)
    else:  # "just_published"
        hit = wait_until(replaced(model), 300)
    kill_group(process)
    result = {"scenario": "training", "moment": moment, "hit": hit, "killed_after_s": round(time.monotonic() - t0, 1),
              **model_outcome(model, before_model),
              "labels_unchanged": label_hashes(studies) == before_labels,
              "temp_files_left": sorted(p.name for p in model.parent.glob(".*.tmp"))}
    assert result["labels_unchanged"], result
    result["restart"] = restart_and_infer(app, studies, env, workdir, image)
    return result


def restart_and_infer(app: Path, studies: Path, env: dict, workdir: Path, image: str) -> Dict[str, object]:
    """The restarted server loads whatever model file the kill left and answers with it."""
    process, url = start_server(app, str(studies), env, workdir, CONF, log_name="restart.log")
    try:
        infer = direct_http().post(f"{url}/infer/muscle_seg", params={"image": image, "output": "json"},
                                   data={"params": json.dumps({"region": "all"})}, timeout=300)
        assert infer.status_code == 200, infer.text[:500]
        return {"infer_status": infer.status_code}
    finally:
        assert stop(process) == 0


# ---- label upload ----------------------------------------------------------------------------
def multipart(path: Path, boundary: str, chunk: int, halfway: Optional[threading.Event],
              never: threading.Event) -> Iterator[bytes]:
    """The PUT body streamed in chunks; with ``halfway`` it stops after half the file and hangs."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"label\"; filename=\"{path.name}\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    size = path.stat().st_size
    with open(path, "rb") as f:
        while data := f.read(chunk):
            yield data
            if halfway is not None and f.tell() >= size // 2:
                halfway.set()
                never.wait(120)  # the server dies meanwhile
                return
    yield f"\r\n--{boundary}--\r\n".encode()


def upload_in_background(url: str, path: Path, halfway: Optional[threading.Event]) -> threading.Thread:
    boundary, never = uuid.uuid4().hex, threading.Event()

    def put() -> None:
        try:
            direct_http().put(f"{url}/datastore/label", params={"image": BIG_ID, "tag": "final"},
                              data=multipart(path, boundary, 1 << 20, halfway, never),
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=300)
        except Exception:  # the server was killed: that is the point
            pass

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    return thread


def label_array_digest(path: Path) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(nib.load(path).dataobj)).tobytes()).hexdigest()


def kill_during_label_upload(workdir: Path, moment: str) -> Dict[str, object]:
    app, studies, env, _ = setup(workdir)
    label = studies / "labels" / "final" / f"{BIG_ID}.nii"
    new_label = workdir / f"{BIG_ID}.nii"
    write_big_label(new_label, offset=100)
    old, new = label_array_digest(label), label_array_digest(new_label)
    process, url = start_server(app, str(studies), env, workdir, CONF)
    halfway = threading.Event() if moment == "mid_body" else None
    t0 = time.monotonic()
    upload_in_background(url, new_label, halfway)
    if halfway is not None:
        hit = halfway.wait(120)
    elif moment == "label_temp_file":
        hit = wait_until(temp_file_in(label.parent, label.name), 120)
    else:  # "just_replaced"
        hit = wait_until(replaced(label), 120)
    kill_group(process)
    digest = label_array_digest(label)  # raises on a truncated file
    json.loads((studies / "datastore_v2.json").read_text())
    result = {"scenario": "label_upload", "moment": moment, "hit": hit, "killed_after_s": round(time.monotonic() - t0, 2),
              "label": {old: "old", new: "new"}.get(digest, "NEITHER"),
              "temp_files_left": sorted(p.name for p in label.parent.glob(".*.tmp"))}
    assert result["label"] != "NEITHER", result
    process, url = start_server(app, str(studies), env, workdir, CONF, log_name="restart.log")
    try:
        info = direct_http().get(f"{url}/datastore/image/info", params={"image": BIG_ID}, timeout=60)
        result["restart_image_info"] = info.status_code
        assert info.status_code == 200, info.text
    finally:
        assert stop(process) == 0
    return result


def write_big_label(path: Path, offset: int) -> None:
    label = np.zeros(BIG_SHAPE, np.uint8)
    label[offset:offset + 200, 100:400, :] = 1
    label[::7, ::5, ::3] = 1  # enough structure that a truncated file cannot pass for it
    nib.save(nib.Nifti1Image(label, np.diag([0.8, 0.8, 2.5, 1.0])), path)


def write_big_image(path: Path) -> None:
    body = np.full(BIG_SHAPE, -1000, np.int16)
    body[96:416, 128:384, :] = 40
    nib.save(nib.Nifti1Image(body, np.diag([0.8, 0.8, 2.5, 1.0])), path)


# ---- set-up ----------------------------------------------------------------------------------
def setup(workdir: Path):
    """An app copy, a datastore of three small labelled phantoms plus one big labelled image;
    returns (app, studies, env, id of a phantom)."""
    workdir.mkdir(parents=True)
    app, studies = app_copy(workdir), workdir / "studies"
    records = write_dataset(studies, count=3, seed=2, matrix=96, max_slices=16, label_slices="l3")
    write_big_image(studies / f"{BIG_ID}.nii")
    write_big_label(studies / "labels" / "final" / f"{BIG_ID}.nii", offset=50)
    # no uncertainty scoring at start-up: a scoring subprocess would outlive the SIGINT of stop()
    env = {**offline_env(workdir), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    return app, studies, env, records[0]["id"]


SCENARIOS = {
    **{f"training:{m}": (kill_during_training, m) for m in ("mid_run", "publish_temp_file", "just_published")},
    **{f"label:{m}": (kill_during_label_upload, m) for m in ("mid_body", "label_temp_file", "just_replaced")},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="scenarios to run (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: List[Dict[str, object]] = []
    failures = 0
    tmp = Path(tempfile.mkdtemp(prefix="kill_server_"))
    for round_ in range(args.rounds):
        for name in args.only or sorted(SCENARIOS):
            run, moment = SCENARIOS[name]
            try:
                result = run(tmp / f"{name.replace(':', '_')}_{round_}", moment)
            except AssertionError as error:
                failures += 1
                result = {"scenario": name, "FAILED": str(error)}
            results.append(result)
            print(json.dumps(result), flush=True)
    if failures:
        print(f"logs and data kept in {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(f"{len(results) - failures} of {len(results)} kills left a consistent state", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
