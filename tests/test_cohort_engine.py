"""`sarcopenia measure` on a real local Dask cluster with two workers: a cohort with a bad case,
a rerun that skips what is done, and a run killed for real that resumes without redoing cases."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sarcopenia_app.analysis import MeasureOptions
from sarcopenia_app.cohort_engine import CohortJob
from sarcopenia_app.phantom import generate_case, write_case
from sarcopenia_app.run_key import input_sha256, run_key

CASES = 5
RUN_DEADLINE_S = 600.0


def measure_command(inputs: Path, out: Path) -> list:
    return [sys.executable, "-m", "sarcopenia_app.cli", "measure", str(inputs), "--out", str(out), "--workers", "2",
            "--device", "cpu", "--sex", "M", "--height-m", "1.75"]


def run_log(out: Path) -> list:
    path = out / "run_log.csv"
    return list(csv.DictReader(open(path))) if path.exists() else []


def record_mtimes(out: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/measurements.json")}


def live_members(process_group: int) -> list:
    """Pids of the group's processes that still run (zombies excluded: nobody may reap them here)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # ended while being read
        if int(group) == process_group and state != "Z":
            members.append(int(stat.parent.name))
    return members


def wait_until_gone(process_group: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while live_members(process_group):
        assert time.monotonic() < deadline, f"group {process_group} still runs {timeout_s} s after SIGKILL"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cohort") / "inputs"
    for index in range(CASES - 1):
        write_case(generate_case(2000, 3 + index, matrix=128, max_slices=40), folder, "nifti", "none", False)
    (folder / "broken.nii.gz").write_bytes(b"not a nifti at all")
    return folder


def test_two_workers_measure_a_cohort_a_bad_case_fails_alone_and_a_rerun_skips_finished_cases(inputs, tmp_path):
    out = tmp_path / "out"
    first = subprocess.run(measure_command(inputs, out), capture_output=True, text=True, timeout=RUN_DEADLINE_S)
    assert first.returncode == 0, first.stderr[-3000:]
    log = run_log(out)
    assert sorted(row["status"] for row in log) == ["done"] * (CASES - 1) + ["failed"]
    assert {row["worker"] for row in log} == {"0", "1"}  # both workers of the local cluster took cases
    assert next(row for row in log if row["case"] == "broken")["error"]
    rows = {row["case"]: row for row in csv.DictReader(open(out / "measurements.csv"))}
    assert len(rows) == CASES and rows["broken"]["error"] and not rows["broken"]["sma_cm2"]
    measured = [row for row in rows.values() if row["has_l3"] == "True"]
    assert measured and all(float(row["sma_cm2"]) > 20 for row in measured)
    finished = record_mtimes(out)
    assert len(finished) == CASES - 1

    again = subprocess.run(measure_command(inputs, out), capture_output=True, text=True, timeout=RUN_DEADLINE_S)
    assert again.returncode == 0, again.stderr[-3000:]
    first_run = log[0]["run_started_utc"]
    rerun = {row["case"]: row["status"] for row in run_log(out) if row["run_started_utc"] != first_run}
    assert rerun == {**{name: "skipped" for name in finished}, "broken": "failed"}
    assert record_mtimes(out) == finished  # nothing was measured or written again
    assert {row["case"] for row in csv.DictReader(open(out / "measurements.csv"))} == set(rows)


def test_a_killed_run_resumes_without_redoing_finished_cases(inputs, tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen(measure_command(inputs, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # its own process group: the cluster's workers die with it
    deadline = time.monotonic() + RUN_DEADLINE_S
    try:
        while not any(row["status"] == "done" for row in run_log(out)):
            assert run.poll() is None, "the run ended before any case finished"
            assert time.monotonic() < deadline, "no case finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        wait_until_gone(run.pid)  # the cluster's workers too: none may write after this
    # a case is finished when its record is written (last, atomically); the kill may come before
    # the run log got its line
    mtimes_before = record_mtimes(out)
    done_before = set(mtimes_before)
    assert {row["case"] for row in run_log(out) if row["status"] == "done"} <= done_before
    assert not (out / "measurements.csv").exists()  # the table is written at the end, never half of it

    resumed = subprocess.run(measure_command(inputs, out), capture_output=True, text=True, timeout=RUN_DEADLINE_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first_run = run_log(out)[0]["run_started_utc"]
    second = {row["case"]: row["status"] for row in run_log(out) if row["run_started_utc"] != first_run}
    assert {case for case, status in second.items() if status == "skipped"} == done_before
    assert {case for case, status in second.items() if status == "done"} == (
        {p.name[:-len(".nii.gz")] for p in inputs.glob("*.nii.gz")} - done_before - {"broken"})
    assert {case: mtime for case, mtime in record_mtimes(out).items() if case in done_before} == mtimes_before
    assert len(list(csv.DictReader(open(out / "measurements.csv")))) == CASES


def test_run_key_changes_with_the_input_content_the_models_the_options_and_the_rules(tmp_path, monkeypatch):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"first version")
    job = CohortJob(str(tmp_path), "muscle.pt", "locator.pt")
    models = {"muscle": "muscle_seg.pt sha256:aaaa", "l3_locator": "l3_locator.pt sha256:bbbb"}
    key = run_key(input_sha256(scan), models, job.result_settings())
    assert run_key(input_sha256(scan), dict(models), CohortJob(str(tmp_path / "x"), "a", "b").result_settings()) == key
    other_options = CohortJob(str(tmp_path), "muscle.pt", "locator.pt", MeasureOptions(cutoffs="martin2013"))
    assert run_key(input_sha256(scan), models, other_options.result_settings()) != key
    assert run_key(input_sha256(scan), {**models, "muscle": "muscle_seg.pt sha256:cccc"},
                   job.result_settings()) != key
    monkeypatch.setattr("sarcopenia_app.run_key.RULES_VERSION", "an upgrade that measures differently")
    assert run_key(input_sha256(scan), models, job.result_settings()) != key
    monkeypatch.undo()
    scan.write_bytes(b"second version")
    assert run_key(input_sha256(scan), models, job.result_settings()) != key


def test_a_dicom_folder_hash_sees_a_changed_slice(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"a")
    (series / "2.dcm").write_bytes(b"b")
    before = input_sha256(series)
    (series / "2.dcm").write_bytes(b"c")
    assert input_sha256(series) != before
