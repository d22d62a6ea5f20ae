"""How many inferences run at once, and how many may wait.

Upstream 0.8.5 runs ``POST /infer`` on the server's event loop: one inference at a time, and
while it runs the server answers nothing else (not even ``/info/`` or a training's status).
Here inferences run in worker threads, at most ``concurrency`` at once (each holds a volume
and the networks' activations, so this bounds memory: docs/reliability.md), and at most
``max_waiting`` more queue; beyond that a client gets 503 with Retry-After instead of a timeout.
"""

from typing import Callable, TypeVar

import anyio
from fastapi import HTTPException

T = TypeVar("T")


class InferLimit:
    def __init__(self, concurrency: int, max_waiting: int):
        if concurrency < 1 or max_waiting < 0:
            raise ValueError(f"infer concurrency {concurrency} must be >= 1 and max waiting {max_waiting} >= 0")
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.max_in_flight = concurrency + max_waiting
        self.in_flight = 0  # running + waiting; only touched on the event loop, so no lock

    async def run(self, work: Callable[[], T]) -> T:
        if self.in_flight >= self.max_in_flight:
            raise HTTPException(status_code=503, detail=f"{self.in_flight} inferences are running or waiting: "
                                                        "try again in a minute", headers={"Retry-After": "30"})
        self.in_flight += 1
        try:
            return await anyio.to_thread.run_sync(work, limiter=self.limiter)
        finally:
            self.in_flight -= 1
