"""Requests for fresh scores that are never dropped and never pile up (replaces
``MONAILabelApp.async_scoring``).

MONAI Label 0.8.5 asks for scores at server start, after every next-sample request and at the end
of every training run. The last one comes from the train subprocess as ``POST /scoring/<method>``,
and that route answers 429 and does nothing while a scoring task runs: the running task may have
loaded the model from before the training, so the scores stay stale. Here the subprocess asks
``POST /scoring/`` instead, which the server queues behind the running task. In the server, a
request is queued unless one is already waiting: a waiting task has not loaded any model yet, so
it will see every model published before it starts.
"""

import logging
import threading
from typing import Any, Dict, Optional, Sequence

import requests
from monailabel.config import settings
from monailabel.utils.async_tasks.task import AsyncTask
from monailabel.utils.async_tasks.utils import background_executors, tasks

logger = logging.getLogger(__name__)


def is_waiting(method: str) -> bool:
    """A scoring task for `method` is queued and has not started."""
    return any(task.get("status") == "SUBMITTED" and task.get("request", {}).get("method") == method
               for task in tasks("scoring"))


def request_scoring(methods: Sequence[str], server_mode: bool, method: Optional[str] = None,
                    params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Ask for scores with `method` (all `methods` when None); answers like async_scoring."""
    chosen = [method] if method else list(methods)
    if not chosen:
        return {}
    if not server_mode:  # a train or scoring subprocess: ask the server over HTTP
        url = f"http://127.0.0.1:{settings.MONAI_LABEL_SERVER_PORT}/scoring/"
        try:
            response = requests.post(url, json={m: (params or {}).get(m, {}) for m in chosen}, timeout=30)
            logger.info(f"scores requested from the server: HTTP {response.status_code}")
            return response.json() if response.ok else {}
        except requests.RequestException as error:  # no server (a script): nothing to refresh
            logger.warning(f"scores not requested: {error}")
            return {}
    result = {}
    for name in chosen:
        if is_waiting(name):
            result[name] = {"status": "already queued"}
            continue
        request = {"method": name, **((params or {}).get(name) or {})}
        result[name], _ = AsyncTask.run("scoring", request=request, params=params, enqueue=True)
    return result[method] if method else result


def stop_scoring() -> None:
    """Drop waiting scoring tasks and kill the running one."""
    executor = background_executors.get("scoring")
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
    AsyncTask.stop("scoring")


def stop_scoring_at_exit() -> None:
    """A server asked to stop must not wait for a scoring run (minutes on a CPU): MONAI Label runs
    tasks on a non-daemon thread that reads the subprocess to its end, and the interpreter joins it
    at exit. MONAI Label's lifespan has no shutdown hook, so this runs among the interpreter's
    thread-exit callbacks, which run latest-registered first, before concurrent.futures joins."""
    threading._register_atexit(stop_scoring)  # noqa: SLF001 - the only hook that runs before the join
