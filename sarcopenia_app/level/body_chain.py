"""Count vertebral bodies outward from one named body (L3's where it was found) to name the others.

The locator's level coordinate counts well near L3, which it was built around, but it can drift by a
whole vertebra far from it (compressed thoracic levels, thick slices: docs/cohorts.md). The body
head sees each vertebral body as a run of rows between two discs, a local sign that does not drift.
So the levels above and below the anchor body are named by counting body runs from it, one
vertebral pitch at a time. The count stops where it cannot be sure: a body cut by the scan's
edge, no run one pitch on, or two runs competing for the same step. Thick slices can blur a disc so
that two or three bodies form one run above 0.5; the disc still shows as a dip in the head's
probability, where the run is split (`body_runs`). A run as long as two bodies without such a dip,
centred about 1.5 pitches on, is counted as two.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .locator import LEVEL_NAMES, probable_runs, weighted_centre
from .projection import ROW_MM

# the next body's middle lies about one pitch on (lumbar heights differ by about 10 % between neighbours)
ONE_STEP = (0.6, 1.4)
# a run that is two bodies behind a blurred disc: centred between one and two pitches on ...
TWO_STEPS = (1.15, 1.9)
MERGED_PITCHES = (1.15, 2.0)  # ... and longer than one body with its discs, shorter than three bodies
DISC_DIP = 0.2  # a disc inside a run: the probability falls this far below the peaks on both sides
FRAGMENT_PITCHES = 0.4  # a run whose middle is this close to the last counted body is part of it
PITCH_MM = (20.0, 50.0)  # one body's middle to the next in adults, T11 to S1
PITCH_ROWS = (PITCH_MM[0] / ROW_MM, PITCH_MM[1] / ROW_MM)
NEAR_GAPS = 4  # the pitch is read from this many body-to-body gaps nearest the anchor
PITCH_UPDATE = 0.5  # how much each counted step moves the expected pitch (pitches change slowly)
HIGHEST, LOWEST = LEVEL_NAMES.index("T11"), LEVEL_NAMES.index("S1")  # the count stops past these


def is_whole(run: Tuple[int, int], rows: int) -> bool:
    """A run that touches neither end of the scan (else its middle may be cut off)."""
    return run[0] > 0 and run[1] < rows - 1


def _walk(runs: List[Tuple[int, int]], centres: List[float], rows: int, start: float, pitch: float,
          direction: int, limit: int) -> List[float]:
    """Up to `limit` body middles one pitch after another from `start` (rows grow towards the head:
    direction +1 walks up), until the count cannot be sure."""
    found: List[float] = []
    here = start
    ahead = sorted((i for i, c in enumerate(centres) if (c - start) * direction > FRAGMENT_PITCHES * pitch),
                   key=lambda i: (centres[i] - start) * direction)
    while ahead and len(found) < limit:
        i = ahead[0]
        steps = (centres[i] - here) * direction / pitch
        if steps <= FRAGMENT_PITCHES:  # a piece of the body just counted
            ahead.pop(0)
            continue
        if not is_whole(runs[i], rows):
            break
        length = (runs[i][1] - runs[i][0] + 1) / pitch
        if ONE_STEP[0] <= steps <= ONE_STEP[1] and length < MERGED_PITCHES[0]:
            rival = ahead[1] if len(ahead) > 1 else None
            if rival is not None and (centres[rival] - here) * direction / pitch <= ONE_STEP[1]:
                break  # two runs for one step: the head split a body or saw something else
            middles = [centres[i]]
        elif TWO_STEPS[0] <= steps <= TWO_STEPS[1] and MERGED_PITCHES[0] <= length <= MERGED_PITCHES[1]:
            middles = [centres[i] - direction * pitch / 2, centres[i] + direction * pitch / 2]
        else:
            break
        for middle in middles:
            pitch = (1 - PITCH_UPDATE) * pitch + PITCH_UPDATE * abs(middle - here)
            here = middle
            found.append(middle)
        ahead.pop(0)
    return found[:limit]


def _dips(probability: np.ndarray, first: int, last: int) -> List[int]:
    """Rows of the local minima strictly inside [first, last] (the middle row of a flat minimum)."""
    found, i = [], first + 1
    while i < last:
        j = i
        while j + 1 < last and probability[j + 1] == probability[i]:
            j += 1
        if probability[i] < probability[i - 1] and probability[i] < probability[j + 1]:
            found.append((i + j) // 2)
        i = j + 1
    return found


def _split_at_discs(probability: np.ndarray, first: int, last: int) -> List[Tuple[int, int]]:
    """Run [first, last] split at its deepest disc dip (DISC_DIP below the peaks on both sides),
    and so on in each part."""
    best, depth = None, DISC_DIP
    for i in _dips(probability, first, last):
        dip = min(probability[first:i].max(), probability[i + 1:last + 1].max()) - probability[i]
        if dip >= depth:
            best, depth = i, dip
    if best is None:
        return [(first, last)]
    return _split_at_discs(probability, first, best - 1) + _split_at_discs(probability, best + 1, last)


def body_runs(probability: np.ndarray) -> List[Tuple[int, int]]:
    """Rows [first, last] of each vertebral body the head sees, bottom up: its runs above 0.5,
    split where a disc shows as a dip inside one."""
    return [part for run in probable_runs(probability) for part in _split_at_discs(probability, *run)]


def pitch_rows(centres: List[float], anchor_row: float, fallback: float) -> float:
    """The vertebral pitch (rows from one body's middle to the next) around the anchor: the median
    of the NEAR_GAPS gaps between neighbouring runs nearest it that an adult spine can have
    (PITCH_MM; a blurred disc makes a gap of 1.5 pitches, a split body a short one), else `fallback`."""
    gaps = [(abs((a + b) / 2 - anchor_row), b - a) for a, b in zip(centres, centres[1:])
            if PITCH_ROWS[0] <= b - a <= PITCH_ROWS[1]]
    nearest = [gap for _, gap in sorted(gaps)[:NEAR_GAPS]]
    return float(np.median(nearest)) if nearest else fallback


def count_from(body_probability: np.ndarray, runs: List[Tuple[int, int]], anchor_row: float, anchor_index: int,
               fallback_pitch: float) -> Tuple[Dict[int, float], float]:
    """(row of each vertebral body's middle counted from the anchor body's (`anchor_row`, level
    `anchor_index`: L3's where it was found) by level index, T11 to S1, the anchor included; the
    pitch in rows). `runs` are the head's bodies (`body_runs`). No middles when no run holds the
    anchor. The pitch comes from the runs near the anchor (`pitch_rows`), else `fallback_pitch`
    (the level coordinate's)."""
    centres = [weighted_centre(body_probability, *run) for run in runs]
    rows_per_level = pitch_rows(centres, anchor_row, fallback_pitch)
    if not any(first - 1 <= anchor_row <= last + 1 for first, last in runs):
        return {}, rows_per_level
    middles = {anchor_index: float(anchor_row)}
    rows = len(body_probability)
    for direction, limit in ((+1, anchor_index - HIGHEST), (-1, LOWEST - anchor_index)):  # up: towards T11
        for step, middle in enumerate(_walk(runs, centres, rows, anchor_row, rows_per_level, direction, limit), start=1):
            middles[anchor_index - direction * step] = middle
    return middles, rows_per_level
