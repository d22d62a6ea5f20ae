"""Muscle at every vertebral level in view (T12 to L5) and the muscle volume over L1-L5.

The levels are the vertebral bodies counted one by one from an anchor body (level/body_chain.py):
L3's where it was found, else the body whose middle the level coordinate names most clearly nearest
L3. The locator's level coordinate can drift by a whole vertebra far from L3; the bodies it sees
between the discs do not. Levels past the count, and every level where no body anchors a count,
come from the level coordinate as follows.

The level locator gives, per projection row, a continuous level coordinate with the integer at
each vertebral body's middle (level/locator.py). A level is in view when its coordinate crosses
that integer inside the scan with a margin: a crossing within EDGE_ROWS of the scan's first or last
row is the network extrapolating at the edge (the rule the L3 path applies to a cut L3 body), so
that level is reported not in view, with the reason. It is measured on the slice nearest the
crossing, moved to the middle of its vertebral body where the locator's body head finds that body
whole. A level's *segment* runs from half a level below to half a level above (its body and
half of each neighbouring disc): the boundary between two levels is halfway between their body
middles where the body head found both, else the coordinate's half-level crossing. Segments tile
the spine, so the L1-L5 volume is the muscle from the T12/L1 boundary to the L5/S1 boundary,
reported only when both lie inside the scan (same margin).
Only L3 has clinical cut-offs; the other levels are numbers for research and for scans without L3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .level.body_chain import ONE_STEP, PITCH_ROWS, body_runs, count_from, is_whole
from .level.locator import (EDGE_ROWS, LEVEL_NAMES, crossings, inner_crossings, probable_runs, too_short_to_count,
                            value_at, weighted_centre)
from .level.projection import ROW_MM
from .measurements import measure_slice

MEASURED_LEVELS: Tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5")
VOLUME_SPAN: Tuple[str, str] = ("L1", "L5")
BODY_SNAP_LEVELS = 0.5  # a found body's middle must read nearer its own level than either neighbour's
MAX_BODY_SPAN_LEVELS = 1.0  # a body covers about 0.75 level (the rest is disc): a longer run is two bodies
NEIGHBOUR_LEVELS = (0.6, 1.6)  # the next body's middle lies about one level away
# half a level (half a body and its disc) is 12-22 mm in adults. A coordinate that takes longer than
# MAX to move half a level from a middle is flat there: the network's reading where it cannot count
# (a chest scan read "T11-T12" over 130 mm). One that moves half a level within MIN is jumping, as
# the network does at a scan's edge. Neither is a middle to measure.
MAX_HALF_LEVEL_MM = 50.0
MIN_HALF_LEVEL_MM = 5.0
# the coordinate drifts up to about a level from the counted bodies (docs/cohorts.md); more is a miscount
MAX_COUNT_DISAGREEMENT = 1.5
ANCHOR_TOLERANCE = 0.3  # without L3: the anchor body's middle must read this near a level's number


@dataclass(frozen=True)
class LevelPosition:
    """Where one level lies along the stored slice axis (fractional indices)."""

    name: str
    mid_slice: Optional[float]  # None: the level's middle was not scanned
    lower: Optional[float]  # its segment's boundaries; None where not scanned (or only at the edge rows)
    upper: Optional[float]
    reason: str = ""  # why the level is not in view

    @property
    def in_view(self) -> bool:
        return self.mid_slice is not None

    @property
    def complete(self) -> bool:
        return self.lower is not None and self.upper is not None


def _inner_crossing_row(row_levels: np.ndarray, level: float) -> Optional[float]:
    """Row of the first crossing of `level` at least EDGE_ROWS inside the scan, or None."""
    rows = inner_crossings(row_levels, level)
    return rows[0] if rows else None


def _counts_around(row_levels: np.ndarray, row: float, level: float) -> bool:
    """Whether the coordinate, from `row` on either side, moves half a level in an anatomical
    distance (MIN_HALF_LEVEL_MM to MAX_HALF_LEVEL_MM) or the scan ends first: it grows to
    `level` + 0.5 towards the feet (lower rows; not asked of L5, see below) and falls to
    `level` - 0.5 towards the head."""
    reach = int(np.ceil(MAX_HALF_LEVEL_MM / ROW_MM))
    rows = np.arange(len(row_levels))
    below, above = rows[(rows <= row) & (rows >= row - reach)], rows[(rows >= row) & (rows <= row + reach)]
    feet = row - below[row_levels[below] >= level + 0.5]  # distances in rows
    head = above[row_levels[above] <= level - 0.5] - row
    # the scan ends within reach: nothing left to see; below L5 the coordinate flattens above S1, the
    # lowest level it knows, so it need not reach L5's lower half-level
    feet_cut = row - reach <= 0 or level + 0.5 > LEVEL_NAMES.index("S1") - 1
    head_cut = row + reach >= len(row_levels) - 1
    for distances, cut in ((feet, feet_cut), (head, head_cut)):
        if (distances.size == 0 and not cut) or (distances.size and distances.min() * ROW_MM < MIN_HALF_LEVEL_MM):
            return False
    return True


def _body_run(row: float, level: float, row_levels: np.ndarray, body_probability: np.ndarray,
              runs: List[Tuple[int, int]]) -> Optional[int]:
    """Index in `runs` of the vertebral body that `row` lies in, or None where it cannot be trusted:
    the level coordinate picks the body, the body head (whose run edges are the discs, a local sign)
    gives its middle. The body is the run whose stretch between the middles of its neighbouring
    discs holds `row`. None where the head found no body there, the body is cut by the scan's edge,
    spans more than MAX_BODY_SPAN_LEVELS (two bodies the head did not separate: thick slices), or
    reads another level at its middle."""
    for i, (first, last) in enumerate(runs):
        below = (runs[i - 1][1] + first) / 2 if i > 0 else -np.inf
        above = (last + runs[i + 1][0]) / 2 if i + 1 < len(runs) else np.inf
        if below <= row <= above:
            break
    else:
        return None
    if not is_whole((first, last), len(body_probability)):
        return None
    centre = weighted_centre(body_probability, first, last)
    span = abs(value_at(row_levels, first) - value_at(row_levels, last))
    if span > MAX_BODY_SPAN_LEVELS or abs(value_at(row_levels, centre) - level) > BODY_SNAP_LEVELS:
        return None
    return i


def _middle_rows(levels: np.ndarray, body: np.ndarray,
                 runs: List[Tuple[int, int]]) -> Dict[float, Tuple[Optional[float], Optional[int]]]:
    """Per level index from T11 to S1: (the row of its middle or None, the index in `runs` of the
    body whose middle that row is, or None where the row is the coordinate's crossing)."""
    rows: Dict[float, Tuple[Optional[float], Optional[int]]] = {}
    for index in np.arange(LEVEL_NAMES.index("T11"), LEVEL_NAMES.index("S1") + 1, dtype=float):
        row = _inner_crossing_row(levels, index)
        if row is not None and not _counts_around(levels, row, index):
            row = None
        run = None if row is None else _body_run(row, index, levels, body, runs)
        rows[index] = (row, None) if run is None else (weighted_centre(body, *runs[run]), run)
    return rows


def _neighbour_body_middle(middle: float, neighbour: int, levels: np.ndarray, body: np.ndarray,
                           runs: List[Tuple[int, int]]) -> Optional[float]:
    """Middle of body run `neighbour`, next to the body whose middle is `middle`, where that run is
    whole and lies NEIGHBOUR_LEVELS away. It places the boundary where the coordinate does not reach
    the neighbour's level (it flattens at S1, the lowest level it knows)."""
    if not 0 <= neighbour < len(runs) or not is_whole(runs[neighbour], len(body)):
        return None
    centre = weighted_centre(body, *runs[neighbour])
    rows_per_level = 1.0 / max(abs(value_at(np.gradient(levels), middle)), 1e-6)
    low, high = NEIGHBOUR_LEVELS
    return centre if low <= abs(centre - middle) / rows_per_level <= high else None


def _boundary_row(levels: np.ndarray, body: np.ndarray, runs: List[Tuple[int, int]],
                  middles: Dict[float, Tuple[Optional[float], Optional[int]]], upper_level: float) -> Optional[float]:
    """Row of the boundary between level `upper_level` and the one below it: halfway between the
    two body middles where the body head found both (or one, and the body next to it), else the
    coordinate's half-level crossing."""
    (above, above_run), (below, below_run) = middles[upper_level], middles[upper_level + 1]
    if above_run is not None and below_run is None:  # rows run from the feet up: the body below is run - 1
        below = _neighbour_body_middle(above, above_run - 1, levels, body, runs)
    elif below_run is not None and above_run is None:
        above = _neighbour_body_middle(below, below_run + 1, levels, body, runs)
    if (above_run is not None or below_run is not None) and above is not None and below is not None:
        return (above + below) / 2
    return _inner_crossing_row(levels, upper_level + 0.5)


def _as_slice(row: Optional[float], row_slices: np.ndarray) -> Optional[float]:
    return None if row is None else float(np.interp(row, np.arange(len(row_slices)), row_slices))


def _not_in_view_reason(row_levels: np.ndarray, name: str) -> str:
    row = _inner_crossing_row(row_levels, float(LEVEL_NAMES.index(name)))
    if row is not None:  # found, then dropped by _counts_around
        return (f"the level count does not move as vertebrae do around where {name}'s middle would be (half a "
                f"level in {MIN_HALF_LEVEL_MM:.0f}-{MAX_HALF_LEVEL_MM:.0f} mm): it cannot count there, not measured")
    if crossings(row_levels, float(LEVEL_NAMES.index(name))):
        return (f"the middle of {name} would lie at the scan's edge (within {EDGE_ROWS} projection rows): "
                "extrapolated, not measured")
    return f"the middle of {name} is not in the scan"


def _rows_per_level(levels: np.ndarray, row: float) -> float:
    """The level coordinate's pitch (rows per level) over the rows next to `row` that read within a
    level of it, kept within adult spines' PITCH_ROWS."""
    here = value_at(levels, row)
    first = last = int(np.clip(np.rint(row), 0, len(levels) - 1))
    while first > 0 and abs(levels[first - 1] - here) < 1.0:
        first -= 1
    while last < len(levels) - 1 and abs(levels[last + 1] - here) < 1.0:
        last += 1
    span = abs(levels[last] - levels[first])
    return float(np.clip((last - first) / span if span > 0 else PITCH_ROWS[1], *PITCH_ROWS))


def _inner_row(row: float, rows: int) -> Optional[float]:
    return row if EDGE_ROWS <= row <= rows - 1 - EDGE_ROWS else None


def _counted_boundary(counted: Dict[int, float], upper_level: int, pitch: float, rows: int) -> Optional[float]:
    """Boundary between two counted levels: halfway between their middles, or half a pitch from the
    one counted (None where that falls in the scan's edge rows)."""
    above, below = counted.get(upper_level), counted.get(upper_level + 1)
    if above is not None and below is not None:
        return (above + below) / 2
    return _inner_row(above - pitch / 2 if above is not None else below + pitch / 2, rows)


def _anchor_without_l3(levels: np.ndarray, body: np.ndarray,
                       runs: List[Tuple[int, int]]) -> Optional[Tuple[float, int]]:
    """(middle row, level index) of the whole body a scan without L3 is counted from: of the bodies
    whose middle the level coordinate reads within ANCHOR_TOLERANCE of a level (T11 to S1) and
    counts around as vertebrae do (`_counts_around`), the one it reads nearest L3, where it counts
    best (far from L3 it compresses the levels)."""
    l3, best = LEVEL_NAMES.index("L3"), None
    for run in runs:
        if not is_whole(run, len(body)):
            continue
        centre = weighted_centre(body, *run)
        reading = value_at(levels, centre)
        index = int(np.rint(reading))
        if (abs(reading - index) <= ANCHOR_TOLERANCE and LEVEL_NAMES.index("T11") <= index <= LEVEL_NAMES.index("S1")
                and _counts_around(levels, centre, float(index)) and (best is None or abs(reading - l3) < best[0])):
            best = (abs(reading - l3), centre, index)
    return None if best is None else (best[1], best[2])


def counted_body_rows(row_levels: Sequence[float], row_body_probability: Sequence[float],
                      l3_row: Optional[float]) -> Tuple[Dict[int, float], float]:
    """(row of each vertebral body's middle counted from L3's middle `l3_row`, or on a scan without
    L3 from the body the coordinate names best (`_anchor_without_l3`), by level index; the pitch in
    rows), or nothing where the locator has no body head or no body can anchor the count."""
    levels, body = np.asarray(row_levels, float), np.asarray(row_body_probability, float)
    if len(body) != len(levels):
        return {}, 0.0
    runs = body_runs(body)
    anchor = (l3_row, LEVEL_NAMES.index("L3")) if l3_row is not None else _anchor_without_l3(levels, body, runs)
    if anchor is None:
        return {}, 0.0
    counted, pitch = count_from(body, runs, anchor[0], anchor[1], _rows_per_level(levels, anchor[0]))
    return _agreeing(counted, levels, anchor[1]), pitch


def _agreeing(counted: Dict[int, float], levels: np.ndarray, anchor: int) -> Dict[int, float]:
    """The counted bodies out to the first, on either side of the anchor, that the level coordinate
    reads more than MAX_COUNT_DISAGREEMENT levels off: a count that far from the coordinate has lost
    a body or gained one (a head misled by something other than a vertebra)."""
    kept: Dict[int, float] = {}
    for side in (range(anchor, min(counted, default=anchor) - 1, -1), range(anchor, max(counted, default=anchor) + 1)):
        for index in side:
            if index not in counted or abs(value_at(levels, counted[index]) - index) > MAX_COUNT_DISAGREEMENT:
                break
            kept[index] = counted[index]
    return kept


def beyond_count(row: float, index: int, counted: Dict[int, float], pitch: float) -> bool:
    """Whether a middle the coordinate found for an uncounted level may stand: no body was counted,
    or it lies past the counted bodies, on the side its level belongs (higher levels lie at higher
    rows), by most of a pitch."""
    if not counted:
        return True
    if index < min(counted):
        return row >= counted[min(counted)] + ONE_STEP[0] * pitch
    return row <= counted[max(counted)] - ONE_STEP[0] * pitch


def level_positions(row_levels: Sequence[float], row_slices: Sequence[float],
                    row_body_probability: Sequence[float] = (), l3_row: Optional[float] = None) -> Dict[str, LevelPosition]:
    """Every measured level's middle and segment, from the locator's per-row level coordinate, the
    stored slice index of each row and (locators with the body head) each row's vertebral-body
    probability, which puts the middle on the body's middle. The bodies counted from L3 (`l3_row`,
    the row of its middle, where it was found) or from `_anchor_without_l3` name the levels
    (level/body_chain.py); the coordinate names only levels past the count."""
    levels, slices = np.asarray(row_levels, float), np.asarray(row_slices, float)
    body = np.asarray(row_body_probability, float)
    too_short = too_short_to_count(len(levels))
    if too_short:  # the count needs about two vertebrae of scan (level/locator.py)
        return {name: LevelPosition(name, None, None, None, too_short) for name in MEASURED_LEVELS}
    flipped = len(slices) > 1 and slices[-1] < slices[0]  # stored slices run from head to feet
    runs = probable_runs(body) if len(body) == len(levels) else []  # no body head: no body runs
    middles = _middle_rows(levels, body, runs)
    counted, pitch = counted_body_rows(levels, body, l3_row)
    found = {}
    for name in MEASURED_LEVELS:
        index = LEVEL_NAMES.index(name)
        if index in counted:
            mid_row: Optional[float] = counted[index]
            reason = ""
        else:
            mid_row = middles[float(index)][0]
            reason = "" if mid_row is not None else _not_in_view_reason(levels, name)
            if mid_row is not None and not beyond_count(mid_row, index, counted, pitch):
                mid_row, reason = None, (f"the level count reads {name} where the vertebral bodies counted along the spine "
                                         "say otherwise: not measured")
        bounds = [_counted_boundary(counted, upper, pitch, len(levels)) if {upper, upper + 1} & counted.keys()
                  else _boundary_row(levels, body, runs, middles, float(upper)) for upper in (index, index - 1)]
        # the coordinate grows towards the feet: the boundary with the level below is the inferior one
        inferior, superior = (_as_slice(row, slices) for row in bounds)
        lower, upper = (superior, inferior) if flipped else (inferior, superior)
        found[name] = LevelPosition(name, _as_slice(mid_row, slices), lower, upper, reason)
    return found


def slices_needed(positions: Dict[str, LevelPosition], n_slices: int) -> Optional[Tuple[int, int]]:
    """[first, last) stored slices that hold every level in view and its segment (cut at the scan's
    edges); None when no level is in view."""
    ends: List[float] = []
    for position in positions.values():
        if position.in_view:
            ends += [position.mid_slice, 0.0 if position.lower is None else position.lower,
                     n_slices - 1.0 if position.upper is None else position.upper]
    if not ends:
        return None
    return max(int(np.floor(min(ends))), 0), min(int(np.ceil(max(ends))) + 1, n_slices)


def _segment_slices(lower: float, upper: float) -> range:
    return range(int(np.ceil(lower)), int(np.floor(upper)) + 1)


def muscle_volume_cm3(hu: np.ndarray, mask: np.ndarray, axis: int, spacing_mm: Sequence[float],
                      slices: range, muscle_hu: Tuple[float, float]) -> float:
    """Muscle (mask within the muscle HU range) in the given slices, as slice area x slice spacing."""
    pixel_mm = [s for i, s in enumerate(spacing_mm) if i != axis]
    area_cm2 = sum(measure_slice(np.take(hu, k, axis), np.take(mask, k, axis), pixel_mm, muscle_hu).sma_cm2
                   for k in slices)
    return float(area_cm2 * spacing_mm[axis] / 10.0)


def measure_levels(hu: np.ndarray, mask: np.ndarray, axis: int, spacing_mm: Sequence[float],
                   positions: Dict[str, LevelPosition], muscle_hu: Tuple[float, float]) -> Dict[str, Any]:
    """`levels` (per level: in_view, slice_index, sma_cm2, muscle_mean_hu, imat_cm2, volume_cm3 of
    its segment, or the reason it is missing) and `muscle_volume_l1_l5_cm3` for a record."""
    pixel_mm = [s for i, s in enumerate(spacing_mm) if i != axis]
    levels: Dict[str, Dict[str, Any]] = {}
    for name, position in positions.items():
        if not position.in_view:
            levels[name] = {"in_view": False, "reason": position.reason}
            continue
        k = int(np.clip(np.rint(position.mid_slice), 0, hu.shape[axis] - 1))
        measured = measure_slice(np.take(hu, k, axis), np.take(mask, k, axis), pixel_mm, muscle_hu)
        volume = (round(muscle_volume_cm3(hu, mask, axis, spacing_mm, _segment_slices(position.lower, position.upper),
                                          muscle_hu), 1) if position.complete else None)
        levels[name] = {"in_view": True, "slice_index": k, **measured.as_dict(), "volume_cm3": volume}
        if volume is None:
            levels[name]["volume_reason"] = f"{name}'s segment is cut by the scan's edge"
    first, last = (positions[name] for name in VOLUME_SPAN)
    if first.complete and last.complete:
        span = _segment_slices(min(first.lower, last.lower), max(first.upper, last.upper))
        volume_l1_l5: Optional[float] = round(muscle_volume_cm3(hu, mask, axis, spacing_mm, span, muscle_hu), 1)
    else:
        volume_l1_l5 = None
    return {"levels": levels, "muscle_volume_l1_l5_cm3": volume_l1_l5}
