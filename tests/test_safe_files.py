"""Crash- and disk-full-safe writes (sarcopenia_app.safe_files) and the datastore that uses them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.datastore.local import SafeLocalDatastore
from sarcopenia_app.publish import publish_atomically
from sarcopenia_app.safe_files import (StorageFullError, backup_path, copy_atomically, read_json_recovering,
                                       write_atomically, write_json_atomically)

COPY_FOREVER = """
import sys
from sarcopenia_app.safe_files import copy_atomically
print("ready", flush=True)
while True:
    copy_atomically(sys.argv[1], sys.argv[2])
    copy_atomically(sys.argv[3], sys.argv[2])
"""


def test_a_process_killed_while_copying_leaves_the_old_or_the_new_file(tmp_path):
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(os.urandom(8 * 1024 * 1024))
    new.write_bytes(os.urandom(8 * 1024 * 1024))
    target = tmp_path / "label.nii.gz"
    shutil.copy(old, target)
    for delay_s in (0.05, 0.2, 0.35):
        process = subprocess.Popen([sys.executable, "-c", COPY_FOREVER, str(old), str(target), str(new)],
                                   stdout=subprocess.PIPE)
        process.stdout.readline()
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert target.read_bytes() in (old.read_bytes(), new.read_bytes())
    for leftover in tmp_path.glob(".label.nii.gz.*.tmp"):  # a killed writer may leave its temporary file
        leftover.unlink()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB file system (tmpfs in a private mount namespace needs root: skip otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode()[:200]}")
    return mount


FILL_AND_WRITE = """
import json, os, sys
from pathlib import Path
from sarcopenia_app.safe_files import StorageFullError, write_json_atomically, copy_atomically
disk = Path(sys.argv[1])
write_json_atomically(disk / "datastore_v2.json", {"objects": {"a": 1}})
(disk / "filler").write_bytes(b"x" * (1024 * 1024 - 64 * 1024))
results = {}
try:
    copy_atomically(sys.argv[2], disk / "label.nii.gz")
except StorageFullError as error:
    results["copy"] = str(error)
try:
    write_json_atomically(disk / "datastore_v2.json", {"objects": {"a": "x" * 200000}})
except StorageFullError as error:
    results["json"] = str(error)
results["json_now"] = json.loads((disk / "datastore_v2.json").read_text())
results["files"] = sorted(os.listdir(disk))
print(json.dumps(results))
"""


def test_a_full_disk_gives_an_error_and_no_corrupt_file(tiny_disk, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(512 * 1024))
    script = (f"mount -t tmpfs -o size=1m tmpfs {tiny_disk} && "
              f"{sys.executable} -c '{FILL_AND_WRITE}' {tiny_disk} {big}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert "no space left" in results["copy"] and "nothing was changed" in results["copy"]
    assert "no space left" in results["json"]
    assert results["json_now"] == {"objects": {"a": 1}}  # the previous version, whole
    # no partial label, no temporary file (the backup holds the previous version too)
    assert results["files"] == ["datastore_v2.json", "datastore_v2.json.bak", "filler"]


def test_write_failure_keeps_the_previous_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"published")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        write_atomically(target, fail)
    assert target.read_bytes() == b"published" and os.listdir(tmp_path) == ["model.pt"]


def test_corrupt_json_is_recovered_from_its_backup(tmp_path):
    path = tmp_path / "datastore_v2.json"
    write_json_atomically(path, {"version": 1})
    write_json_atomically(path, {"version": 2})
    assert json.loads(backup_path(path).read_text()) == {"version": 1}
    path.write_text('{"version": 3, "objects": {"trunc')  # what an in-place writer leaves when killed
    data, note = read_json_recovering(path)
    assert data == {"version": 1} and "recovered" in note
    assert json.loads(path.read_text()) == {"version": 1}
    assert list(tmp_path.glob("datastore_v2.json.corrupt-*"))  # kept for inspection


def test_corrupt_json_without_a_usable_backup_refuses_instead_of_starting_empty(tmp_path):
    path = tmp_path / "datastore_v2.json"
    path.write_text("{broken")
    with pytest.raises(ValueError, match="restore the file"):
        read_json_recovering(path)


def _datastore_with_one_image(root: Path, image: Path) -> SafeLocalDatastore:
    datastore = SafeLocalDatastore(str(root), extensions=["*.nii.gz"], auto_reload=False)
    datastore.add_image("case_1", str(image), {"note": "first"})
    return datastore


def test_datastore_survives_a_corrupted_json_with_its_image_info(tmp_path):
    image = tmp_path / "src.nii.gz"
    image.write_bytes(b"stand-in bytes: the datastore copies, it does not read")
    root = tmp_path / "studies"
    datastore = _datastore_with_one_image(root, image)
    datastore.update_image_info("case_1", {"sarcopenia": {"sma_cm2": 150.0}})
    datastore.save_label("case_1", str(image), "final", {"by": "annotator"})
    json_path = root / "datastore_v2.json"
    json_path.write_bytes(json_path.read_bytes()[:40])  # a crash in the middle of an in-place write

    reopened = SafeLocalDatastore(str(root), extensions=["*.nii.gz"], auto_reload=False)
    info = reopened.get_image_info("case_1")
    assert info["note"] == "first" and info["sarcopenia"]["sma_cm2"] == 150.0  # from the backup, one write older
    assert reopened.get_labeled_images() == ["case_1"]  # the label is on disk: reconciled
    assert not list(root.rglob("*.tmp"))




def test_temporary_files_a_kill_left_are_removed_when_stale_and_kept_while_a_writer_may_live(tmp_path):
    """benchmarks/kill_server.py leaves ``.<name>.<random>.tmp`` beside a label or the model; the
    next datastore start (and the next publish) removes them once nobody can still be writing."""
    root = tmp_path / "studies"
    (root / "labels" / "final").mkdir(parents=True)
    stale, fresh = root / "labels" / "final" / ".case.nii.gz.abc123.tmp", root / ".case.nii.gz.def456.tmp"
    other = root / ".keep_me"
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    an_hour_ago = time.time() - 2 * 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    SafeLocalDatastore(str(root), extensions=["*.nii.gz"], auto_reload=False)
    assert not stale.exists() and fresh.exists() and other.exists()

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    killed_publish = model_dir / ".muscle_seg.pt.xyz.tmp"
    killed_publish.write_bytes(b"half a checkpoint")
    os.utime(killed_publish, (an_hour_ago, an_hour_ago))
    publish_atomically({"model": {}}, model_dir / "muscle_seg.pt")
    assert not killed_publish.exists() and (model_dir / "muscle_seg.pt").exists()
