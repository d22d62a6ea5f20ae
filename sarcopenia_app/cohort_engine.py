"""Cohort runs on a Dask cluster: one scan per task, resumable, logged, one CSV at the end.

Why Dask (``distributed``) rather than Ray: pure-Python wheels of a few MB (Ray ships tens of MB with
its own C++ raylet and object store), a local cluster starts offline in seconds and fits a
2-core machine, a remote cluster is just a scheduler address (``tcp://host:8786``), and worker
resources (``dask worker ... --resources GPU=1``) send GPU tasks only to workers that have one.
Results travel through the shared output folder, which a cluster needs anyway.

Every task measures one scan and never raises: a bad case becomes a row with an ``error`` and
the others go on. A case whose stored record carries the same run key (input content, models,
options: run_key.py) is skipped, so a killed run continues where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .analysis import MeasureOptions, Models, load_models, model_description
from .cohort import CaseInput, finished_record, run_case
from .ct_input import InvalidCTError
from .report import write_cohort_csv
from .run_key import input_sha256, run_key

RUN_LOG = "run_log.csv"
COHORT_CSV = "measurements.csv"
RUN_LOG_COLUMNS = ("run_started_utc", "case", "status", "seconds", "worker", "error")
GPU = "GPU"  # the worker resource name GPU tasks ask for


@dataclass(frozen=True)
class CohortJob:
    """Everything a task needs, the same for every case (sent to the workers with each task)."""

    out_dir: str
    muscle_model: str
    locator_model: str
    options: MeasureOptions = MeasureOptions()
    sex: Optional[str] = None
    height_m: Optional[float] = None
    weight_kg: Optional[float] = None
    write_sr: bool = False
    device: Optional[str] = None  # None: the worker's GPU where it has one, else its CPU
    torch_threads: Optional[int] = None  # None: what the worker was started with

    def result_settings(self) -> Dict[str, Any]:
        """The options that change a case's outputs: part of its run key (device and threads do not)."""
        return {"options": dataclasses.asdict(self.options), "sex": self.sex, "height_m": self.height_m,
                "weight_kg": self.weight_kg, "write_sr": self.write_sr}


@dataclass
class Outcome:
    case: CaseInput
    status: str  # "done", "skipped" (finished earlier with the same key) or "failed"
    record: Dict[str, Any]
    seconds: float
    worker: str = ""


def measure_task(case: CaseInput, job: CohortJob) -> Outcome:
    """Runs on a worker: one case, skipped when already finished with the same key; never raises."""
    started = time.perf_counter()
    worker = _worker_name()
    try:
        if job.torch_threads:
            import torch

            torch.set_num_threads(job.torch_threads)
        device = job.device or _worker_device()
        names = {"muscle": _description(job.muscle_model), "l3_locator": _description(job.locator_model)}
        key = run_key(input_sha256(case.path), names, job.result_settings())
        out_dir = Path(job.out_dir)
        previous = finished_record(out_dir, case, key)
        if previous is not None:
            return Outcome(case, "skipped", previous, time.perf_counter() - started, worker)
        models = _models(job.muscle_model, job.locator_model, device)
        record = run_case(case, models, job.options, out_dir, device, job.sex, job.height_m, job.weight_kg,
                          job.write_sr, key)
        return Outcome(case, "done", record, time.perf_counter() - started, worker)
    except Exception as error:  # noqa: BLE001 - one bad case must not stop a cohort
        return Outcome(case, "failed", failure_record(case, error), time.perf_counter() - started, worker)


def failure_record(case: CaseInput, error: BaseException) -> Dict[str, Any]:
    expected = isinstance(error, (InvalidCTError, ValueError))
    return {"case": case.name, "input": str(case.path),
            "error": str(error) if expected else f"{type(error).__name__}: {error}"}


def _description(path: str) -> str:
    return _cached_description(path, os.path.getmtime(path))


@lru_cache(maxsize=8)
def _cached_description(path: str, mtime: float) -> str:
    return model_description(path)


@lru_cache(maxsize=2)
def _cached_models(muscle_path: str, locator_path: str, device: str, mtimes: Tuple[float, float]) -> Models:
    """Loaded once per worker process (and again only when a model file changes)."""
    return load_models(muscle_path, locator_path, device)


def _models(muscle_path: str, locator_path: str, device: str) -> Models:
    return _cached_models(muscle_path, locator_path, device,
                          (os.path.getmtime(muscle_path), os.path.getmtime(locator_path)))


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().name)
    except ValueError:  # called outside a worker (tests, or a plain loop)
        return "local"


def _worker_device() -> str:
    """A local cluster names its workers 0, 1, ...: worker i takes GPU i (modulo the count)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = _worker_name()
    index = int(name) % torch.cuda.device_count() if name.isdigit() else 0
    return f"cuda:{index}"


def local_worker_count(workers: Optional[int], n_cases: int) -> int:
    """`workers`, or one per GPU, or one per CPU core; never more than there are cases."""
    return max(1, min(workers or _local_gpu_count() or os.cpu_count() or 1, max(n_cases, 1)))


@contextmanager
def connect(address: Optional[str], count: int) -> Iterator[Any]:
    """A client of the cluster at `address`, or of a local cluster of `count` single-threaded
    worker processes started here (and stopped after; GPU workers when this machine has GPUs)."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address, timeout="30s") as client:
            yield client
        return
    resources = {GPU: 1} if _local_gpu_count() else None
    with LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None,
                      resources=resources, silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def _local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cluster_has_gpus(client: Any) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(worker.get("resources", {}).get(GPU, 0) > 0 for worker in workers)


class RunLog:
    """run_log.csv, one line per case as it finishes (appended over runs; the first column tells
    runs apart)."""

    def __init__(self, path: Path):
        self.path = path
        self.started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        new = not path.exists() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(RUN_LOG_COLUMNS)

    def write(self, outcome: Outcome) -> None:
        self._writer.writerow([self.started, outcome.case.name, outcome.status, f"{outcome.seconds:.2f}",
                               outcome.worker, outcome.record.get("error", "")])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def run_cohort(cases: Sequence[CaseInput], job: CohortJob, cluster: Optional[str] = None,
               workers: Optional[int] = None,
               progress: Callable[[Iterable, int], Iterable] = lambda items, total: items) -> List[Outcome]:
    """Every case as one task on the cluster (`cluster` address, or a local one of `workers`);
    outcomes in input order. Writes run_log.csv as cases finish, measurements.csv (atomically) at
    the end."""
    from distributed import as_completed

    count = local_worker_count(workers, len(cases))
    if cluster is None and job.torch_threads is None:  # the local workers share this machine's cores
        job = dataclasses.replace(job, torch_threads=max(1, (os.cpu_count() or 1) // count))
    out_dir = Path(job.out_dir)
    log = RunLog(out_dir / RUN_LOG)
    outcomes: Dict[str, Outcome] = {}
    try:
        with connect(cluster, count) as client:
            resources = {GPU: 1} if cluster_has_gpus(client) else None
            batch = uuid.uuid4().hex[:8]
            futures = {client.submit(measure_task, case, job, key=f"measure-{batch}-{i}", resources=resources,
                                     pure=False): case for i, case in enumerate(cases)}
            for future in progress(as_completed(futures), len(futures)):
                case = futures[future]
                try:
                    outcome = future.result()
                except Exception as error:  # noqa: BLE001 - the task never ran to the end (a worker died)
                    outcome = Outcome(case, "failed", failure_record(case, error), 0.0)
                log.write(outcome)
                outcomes[case.name] = outcome
    finally:
        log.close()
    ordered = [outcomes[case.name] for case in cases]
    write_cohort_csv(out_dir / COHORT_CSV, [outcome.record for outcome in ordered])
    return ordered
