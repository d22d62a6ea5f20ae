"""Bounded load on loopback: N clients send inference requests for a fixed time while a training
runs, against the real server on a copy of the app. Zero failed requests expected.

    nice -n 10 .venv/bin/python benchmarks/load_test.py                       # 8 clients, 120 s
    nice -n 10 .venv/bin/python benchmarks/load_test.py --clients 8 --seconds 120 --out /tmp/load.json

Each client loops: ``POST /infer/<model>?image=<id>`` (the 3D Slicer call, multipart answer with
the label), alternating ``muscle_threshold`` and ``muscle_seg`` on 128x128 phantoms of up to 60
slices that contain L3. A request fails if it does not end in 200. A 503 from the deliberate
queue bound (``infer_max_waiting``) is a deliberate "busy, come back" answer, not a failure, if
the client retries after its Retry-After: these clients do, it is counted separately and the
retried request's latency includes the wait. Any other answer, or a dropped connection, fails.
A training (``POST /train/muscle_seg``, fine-tuning, many epochs) starts first and must still be
running at the end (it is then stopped). Memory: every 0.5 s the VmHWM (peak RSS) of the server
and of each process below it (the train subprocess) is read from /proc, and the sum of their
current VmRSS; the report gives the peaks.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from servers import app_copy, direct_http, offline_env, start_server, stop  # noqa: E402

from sarcopenia_app.phantom import write_dataset  # noqa: E402

MODELS = ("muscle_threshold", "muscle_seg")
TRAIN_REQUEST = {"max_epochs": 500, "crop_px": 96, "samples_per_volume": 4, "val_split": 0.34, "dataset": "Dataset",
                 "init": "current"}


def proc_status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak RSS of the server and everything it starts, sampled every ``period_s``."""

    def __init__(self, pid: int, period_s: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.period_s, self.done = pid, period_s, threading.Event()
        self.hwm_kib: Dict[int, int] = {}  # pid -> VmHWM (the kernel's own peak)
        self.names: Dict[int, str] = {}
        self.peak_total_rss_kib = 0

    def run(self) -> None:
        while not self.done.is_set():
            try:
                tree = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in tree:
                self.hwm_kib[process.pid] = max(self.hwm_kib.get(process.pid, 0), proc_status_kib(process.pid, "VmHWM"))
                total += proc_status_kib(process.pid, "VmRSS")
                if process.pid not in self.names:
                    try:
                        self.names[process.pid] = " ".join(process.cmdline()[1:6])
                    except psutil.Error:
                        pass
            self.peak_total_rss_kib = max(self.peak_total_rss_kib, total)
            self.done.wait(self.period_s)

    def report(self) -> Dict[str, object]:
        children = {pid: kib for pid, kib in self.hwm_kib.items() if pid != self.pid}
        return {"server_vmhwm_mib": round(self.hwm_kib.get(self.pid, 0) / 1024),
                "children_vmhwm_mib": {self.names.get(pid, str(pid)): round(kib / 1024) for pid, kib in children.items()},
                "peak_total_rss_mib": round(self.peak_total_rss_kib / 1024)}


def client(url: str, index: int, images: List[str], until: float, results: List[Dict[str, object]]) -> None:
    http, rng = direct_http(), random.Random(index)
    turn = index
    while time.monotonic() < until:
        model, image = MODELS[turn % len(MODELS)], rng.choice(images)
        turn += 1
        start, retries, status, error = time.monotonic(), 0, None, None
        while True:
            try:
                response = http.post(f"{url}/infer/{model}", params={"image": image}, timeout=600)
                status = response.status_code
                if status == 503 and "Retry-After" in response.headers:
                    retries += 1
                    time.sleep(float(response.headers["Retry-After"]))
                    continue
                if status != 200:
                    error = response.text[:300]
            except Exception as failure:  # a refused or dropped connection is a failure
                error = repr(failure)
            break
        results.append({"model": model, "status": status, "seconds": time.monotonic() - start, "retries_503": retries,
                        "error": error, "end": time.monotonic()})


def percentiles(seconds: List[float]) -> Dict[str, Optional[float]]:
    if not seconds:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(seconds, q)), 2) for q in (50, 95, 99)}


def training_running(url: str) -> bool:
    return bool(direct_http().get(f"{url}/train/", params={"check_if_running": "true"}, timeout=30).status_code == 200)


def run(workdir: Path, clients: int, seconds: float, conf: List[str]) -> Dict[str, object]:
    app, studies = app_copy(workdir), workdir / "studies"
    records = write_dataset(studies, count=6, seed=2, matrix=128, max_slices=60, label_slices="l3")
    images = [r["id"] for r in records if r["has_l3"]]
    env = {**offline_env(workdir), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    process, url = start_server(app, str(studies), env, workdir, ["models", ",".join(MODELS), *conf])
    sampler = MemorySampler(process.pid)
    sampler.start()
    try:
        http = direct_http()
        for model in MODELS:  # first loads (model files, locator) are not part of the load
            assert http.post(f"{url}/infer/{model}", params={"image": images[0]}, timeout=600).status_code == 200
        started = http.post(f"{url}/train/muscle_seg", json=TRAIN_REQUEST, timeout=60)
        assert started.status_code == 200, started.text
        time.sleep(5.0)
        results: List[Dict[str, object]] = []
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(url, i, images, t0 + seconds, results)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - t0
        still_training = training_running(url)
        train_status = http.get(f"{url}/train/", timeout=30).json()
        http.delete(f"{url}/train/", timeout=60)
    finally:
        sampler.done.set()
        sampler.join()
        stop(process)
    failed = [r for r in results if r["status"] != 200]
    report: Dict[str, object] = {
        "clients": clients, "seconds": round(elapsed, 1), "images": len(images), "requests": len(results),
        "failed": len(failed), "failures": failed[:5], "retries_503": sum(r["retries_503"] for r in results),
        "throughput_rps": round(len(results) / elapsed, 2),
        "latency_s": {"all": percentiles([r["seconds"] for r in results]),
                      **{m: {"n": sum(r["model"] == m for r in results),
                             **percentiles([r["seconds"] for r in results if r["model"] == m])} for m in MODELS}},
        "training_running_at_end": still_training,
        "training_status": train_status.get("status") if isinstance(train_status, dict) else train_status,
        "memory": sampler.report(),
    }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--conf", nargs="*", default=[], help="extra server --conf pairs, e.g. infer_concurrency 2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load_test_") as tmp:
        report = run(Path(tmp), args.clients, args.seconds, args.conf)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0 if report["failed"] == 0 and report["training_running_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())
