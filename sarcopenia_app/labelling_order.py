"""Which unlabelled scan an annotator should get next, from uncertainty scores and hand-out times.

One ordering for the server's strategy and the active-learning simulation, so the benchmark
measures what annotators get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

DEFAULT_RESERVE_S = 3600  # a scan handed out this recently is being labelled by someone: skip it


@dataclass(frozen=True)
class Candidate:
    score: Optional[float] = None  # uncertainty (sarcopenia_app.uncertainty); None = not scored yet
    handed_out_ts: Optional[float] = None  # last time any strategy gave it to an annotator


def is_reserved(candidate: Candidate, now: float, reserve_s: float) -> bool:
    return candidate.handed_out_ts is not None and now - candidate.handed_out_ts < reserve_s


def labelling_order(candidates: Dict[str, Candidate], now: float, reserve_s: float = DEFAULT_RESERVE_S) -> List[str]:
    """Image ids, best first.

    Free scans come before reserved ones (two annotators must not label the same scan). Among free
    scans, unscored ones (new uploads, or no scoring run yet) come first: nothing is known about
    them, and labelling one is never wasted on a scan the model already handles; then the rest by
    uncertainty, highest first. Reserved scans come last, longest ago first, so an annotator still
    gets work when every scan has been handed out once.
    """
    def key(item):
        image_id, candidate = item
        if is_reserved(candidate, now, reserve_s):
            return (1, 0, candidate.handed_out_ts, image_id)
        if candidate.score is None:
            return (0, 0, 0.0, image_id)
        return (0, 1, -candidate.score, image_id)

    return [image_id for image_id, _ in sorted(candidates.items(), key=key)]
