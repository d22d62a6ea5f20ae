"""Find the mid-L3 slice of a CT, or say that L3 is not in the field of view.

A small 2D network reads the coronal projection (`projection.py`) and predicts, for every 2 mm
row along the scan, (a) a continuous vertebral level coordinate (T1 = 0 ... L3 = 14 ... S1 = 17,
the integer at each vertebral body's middle), (b) whether the row lies in the L3 body and, in
locator files that have it, (c) whether the row lies in any vertebral body rather than a disc
(used to put the other levels' slices on their bodies' middles: level_measurements.py).

Convention: **mid-L3** is where the level coordinate crosses 14, the middle of the L3 vertebral
body along the patient's axis; the slice reported is the scanned slice nearest to it. The
inferior endplate option reports the lowest slice of the predicted L3 body instead. No crossing
inside the scan means L3's middle was not scanned: reported as not found. When the two heads
disagree, the slice either head supports (the L3-body head first, then the level crossing) is
reported with a low confidence and the reason: a scan with L3 must not be answered "no L3"
because one head hesitated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.layers import Norm
from monai.networks.nets import UNet

from .projection import CHANNELS, ROW_MM, Projection, project

LEVEL_NAMES: Tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"])
L3_LEVEL = float(LEVEL_NAMES.index("L3"))
# rows above T10 are all taught "T10" (teaching down to T8 was tried and counted worse: docs/cohorts.md)
LOWEST_TRAINED_LEVEL = float(LEVEL_NAMES.index("T10"))
ROW_DIVISOR = 16  # the network halves the rows four times
LEVEL_SCALE = 4.0  # the network regresses (level - L3) / LEVEL_SCALE: outputs of order one
MIN_CONFIDENCE = 0.25  # below this the slice is still reported, with a warning (docs/measurements.md)
LEVEL_TOLERANCE = 0.75  # the level coordinate at the L3 body's middle must read 14 +- this
CONFIDENCE_LEVEL_SCALE = 0.5  # a level reading 0.5 off L3's middle divides the confidence by e
CONVENTIONS = ("mid", "inferior_endplate")
EDGE_ROWS = 2  # a level crossing this close to the scan's end is extrapolation, not evidence
UNSURE_CONFIDENCE = 0.2  # an answer the two heads do not agree on: below MIN_CONFIDENCE, so it is flagged
UNSURE_LEVEL_TOLERANCE = 1.5  # the body head leads if the level head reads within this of L3's middle
PEAK_MIN = 0.3  # the body head's peak must reach this to lead an unsure answer
BODY_HALF_LEVEL = 0.45  # a vertebral body spans about +-0.45 level around its middle (the rest is disc)
# the level count alone (no body recognised as L3) needs about two vertebrae of scan to count from: on a
# 40 mm real stack at T11-T12 it read "L3" (docs/measurements.md)
MIN_COUNT_MM = 60.0


@dataclass(frozen=True)
class LocatorConfig:
    channels: Tuple[int, ...] = (8, 16, 32, 64, 128)
    res_units: int = 1
    body_head: bool = True  # a third output: the row lies in a vertebral body (files before it: False)

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict) -> "LocatorConfig":
        values = dict(values)
        values["channels"] = tuple(values["channels"])
        values.setdefault("body_head", False)
        return cls(**values)

    @property
    def outputs(self) -> int:
        return 3 if self.body_head else 2


class LevelNetwork(torch.nn.Module):
    """UNet over the projection, averaged across columns: (B, 2, W, R) -> (B, outputs, R) with
    channel 0 the level coordinate, channel 1 the L3-body logit and channel 2 (if any) the
    vertebral-body logit of each row."""

    def __init__(self, config: LocatorConfig):
        super().__init__()
        self.unet = UNet(spatial_dims=2, in_channels=CHANNELS, out_channels=config.outputs, channels=config.channels,
                         strides=(2,) * (len(config.channels) - 1), num_res_units=config.res_units,
                         norm=Norm.INSTANCE)

    def forward(self, projection: torch.Tensor) -> torch.Tensor:
        out = self.unet(projection).mean(dim=2)
        return torch.cat([out[:, :1] * LEVEL_SCALE + L3_LEVEL, out[:, 1:]], dim=1)


@dataclass
class LevelLocator:
    network: LevelNetwork
    config: LocatorConfig

    def state(self) -> dict:
        return {"model": self.network.state_dict(), "locator_config": self.config.to_dict()}


def build_locator(config: LocatorConfig = LocatorConfig()) -> LevelLocator:
    return LevelLocator(LevelNetwork(config), config)


def load_locator(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> LevelLocator:
    state = torch.load(str(path), map_location=device, weights_only=True)
    locator = build_locator(LocatorConfig.from_dict(state["locator_config"]))
    locator.network.load_state_dict(state["model"])
    locator.network.to(device).eval()
    return locator


@dataclass
class L3Location:
    """Where L3 is in the stored volume. Slice indices count along the stored array's
    superior-inferior axis (`index_axis`, 2 for axial stacks), 0-based."""

    has_l3: bool
    confidence: float
    convention: str = "mid"
    slice_index: Optional[int] = None
    z_mm: Optional[float] = None  # world (scanner) z of that slice's centre
    l3_slices: Optional[List[int]] = None  # every slice of the predicted L3 body, ascending
    index_axis: int = 2
    levels_seen: Optional[Tuple[str, str]] = None  # lowest and highest level in the scan
    reason: str = ""
    row_levels: List[float] = field(default_factory=list, repr=False)  # per projection row
    row_l3_probability: List[float] = field(default_factory=list, repr=False)
    row_body_probability: List[float] = field(default_factory=list, repr=False)  # empty: no body head
    row_slices: List[float] = field(default_factory=list, repr=False)  # stored (fractional) slice of each row
    # projection row of L3's middle where both heads agree on it: the other levels are counted from it
    l3_mid_row: Optional[float] = None


def predict_rows(locator: LevelLocator, projection: Projection,
                 device: Union[str, torch.device] = "cpu") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(level coordinate, L3 probability, vertebral-body probability) per projection row; the last
    is empty for a locator without the body head."""
    rows = projection.rows
    padded = int(np.ceil(rows / ROW_DIVISOR) * ROW_DIVISOR)
    image = np.zeros((1, CHANNELS, projection.image.shape[1], padded), np.float32)
    image[..., :rows] = projection.image
    locator.network.eval()
    with torch.no_grad():
        out = locator.network(torch.from_numpy(image).to(device))[0, :, :rows].cpu().numpy()
    probabilities = 1.0 / (1.0 + np.exp(-out[1:]))
    return out[0], probabilities[0], probabilities[1] if len(probabilities) > 1 else np.zeros(0)


def level_name(level: float) -> str:
    if level < LOWEST_TRAINED_LEVEL + 0.5:
        return f"{LEVEL_NAMES[int(LOWEST_TRAINED_LEVEL)]} or above"
    return LEVEL_NAMES[int(np.clip(np.rint(level), 0, len(LEVEL_NAMES) - 1))]


def crossings(levels: np.ndarray, level: float = L3_LEVEL) -> List[float]:
    """Fractional rows where the (decreasing upwards) level coordinate passes `level`, the middle
    of that vertebral body (L3's by default)."""
    found = []
    for r in range(len(levels) - 1):
        a, b = levels[r] - level, levels[r + 1] - level
        if a >= 0 > b:
            found.append(r + a / (a - b))
    return found


def locate_l3(locator: LevelLocator, image_hu: MetaTensor, convention: str = "mid",
              device: Union[str, torch.device] = "cpu") -> L3Location:
    """The L3 slice of a (1, X, Y, Z) HU volume with its affine, or why there is none.

    The two heads must agree: the rows classified as L3 body give the body's extent and middle,
    and the level coordinate there must read L3. A body cut by the scan's edge is accepted only
    if the level coordinate crosses L3's middle inside the scan.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}")
    projection = project(image_hu)
    levels, probability, body_probability = predict_rows(locator, projection, device)
    lowest, highest = np.percentile(levels, [95, 5])  # robust to the scan's edge rows
    seen = (level_name(lowest), level_name(highest))
    common = dict(convention=convention, index_axis=projection.stored_axis, levels_seen=seen,
                  row_levels=[round(float(v), 3) for v in levels],
                  row_l3_probability=[round(float(v), 3) for v in probability],
                  row_body_probability=[round(float(v), 3) for v in body_probability],
                  row_slices=[round(float(projection.stored_slice(r)), 3) for r in range(projection.rows)])
    absent = f"L3 is not in the field of view: the scan covers about {seen[0]} to {seen[1]}"
    confident = _confident_body(levels, probability)
    if confident is not None:
        (first, last), mid_row = confident
        confidence, reason = _confidence(probability[first:last + 1], value_at(levels, mid_row)), ""
        common["l3_mid_row"] = round(float(mid_row), 3)
    else:
        too_short = too_short_to_count(projection.rows)
        unsure = _unsure_body(levels, probability, count_allowed=too_short is None)
        if unsure is None:
            if too_short and inner_crossings(levels):
                absent = f"L3 not found: no vertebral body was recognised as L3, and {too_short}"
            return L3Location(False, _absence_confidence(levels), reason=absent, **common)
        (first, last), mid_row, doubt = unsure
        confidence = min(_confidence(probability[first:last + 1], value_at(levels, mid_row)), UNSURE_CONFIDENCE)
        reason = f"L3 uncertain: {doubt}"
    row = first if convention == "inferior_endplate" else mid_row
    slice_index = int(np.clip(np.rint(projection.stored_slice(row)), 0, projection.n_slices - 1))
    body = sorted({int(np.clip(np.rint(projection.stored_slice(r)), 0, projection.n_slices - 1))
                   for r in np.arange(first - 0.5, last + 0.51, 0.25)})
    return L3Location(True, round(confidence, 3), slice_index=slice_index,
                      z_mm=_world_z(image_hu, projection.stored_axis, slice_index),
                      l3_slices=list(range(body[0], body[-1] + 1)), reason=reason, **common)


def _confident_body(levels: np.ndarray, probability: np.ndarray) -> Optional[Tuple[Tuple[int, int], float]]:
    """((first, last) rows, mid row) when both heads agree: a run of L3-body rows whose middle is
    scanned (or, cut by the scan's edge, a level crossing beside it) and reads L3 on the level head."""
    run = _best_run(probability)
    if run is None:
        return None
    first, last = run
    if first > 0 and last < len(probability) - 1:
        mid_row = weighted_centre(probability, first, last)
    else:
        near = [r for r in crossings(levels) if first - 1 <= r <= last + 1]
        if not near:
            return None
        mid_row = near[0]
    if abs(value_at(levels, mid_row) - L3_LEVEL) > LEVEL_TOLERANCE:
        return None
    return run, mid_row


def _unsure_body(levels: np.ndarray, probability: np.ndarray,
                 count_allowed: bool = True) -> Optional[Tuple[Tuple[int, int], float, str]]:
    """When the heads do not agree, the best answer and its doubt, or None if neither head says
    L3's middle is in the scan. The L3-body head leads (on short scans without ribs or pelvis the
    level head drifts while the body head still finds the vertebra); the level head's crossing is
    the last resort, and only on a scan long enough to count from (`count_allowed`)."""
    region = _peak_region(probability)
    if region is not None:
        first, last = region
        mid_row = weighted_centre(probability, first, last)
        if abs(value_at(levels, mid_row) - L3_LEVEL) <= UNSURE_LEVEL_TOLERANCE:
            return region, mid_row, ("the L3 body was found but the level count does not confirm it as L3; "
                                     "the slice is the middle of the found body")
    inner = inner_crossings(levels)
    if inner and count_allowed:
        mid_row = max(inner, key=lambda r: value_at(probability, r))
        return _level_body_rows(levels, mid_row), mid_row, ("no vertebral body was recognised as L3; the slice is "
                                                            "where the level count reads mid-L3")
    return None


def inner_crossings(levels: np.ndarray, level: float = L3_LEVEL) -> List[float]:
    """Rows where the level coordinate crosses `level` (L3's middle by default) at least EDGE_ROWS
    inside the scan: a crossing in the edge rows is the network extrapolating, not evidence."""
    return [r for r in crossings(levels, level) if EDGE_ROWS <= r <= len(levels) - 1 - EDGE_ROWS]


def too_short_to_count(rows: int) -> Optional[str]:
    """Why a scan of `rows` projection rows is too short to count vertebrae on, or None."""
    length_mm = (rows - 1) * ROW_MM
    if length_mm >= MIN_COUNT_MM:
        return None
    return f"the scan covers only {length_mm:.0f} mm, too short to count vertebrae (at least {MIN_COUNT_MM:.0f} mm)"


def _peak_region(probability: np.ndarray) -> Optional[Tuple[int, int]]:
    """Rows around the L3-body head's peak down to half its height, if the peak is at least
    PEAK_MIN and the region does not touch the scan's edge (then its middle may be cut off)."""
    peak = int(np.argmax(probability))
    if probability[peak] < PEAK_MIN:
        return None
    half = probability[peak] / 2
    first = last = peak
    while first > 0 and probability[first - 1] >= half:
        first -= 1
    while last < len(probability) - 1 and probability[last + 1] >= half:
        last += 1
    return (first, last) if first > 0 and last < len(probability) - 1 else None


def weighted_centre(probability: np.ndarray, first: int, last: int) -> float:
    """The probability-weighted middle row of rows first..last."""
    weights = probability[first:last + 1]
    return float(np.sum(np.arange(first, last + 1) * weights) / np.sum(weights))


def _level_body_rows(levels: np.ndarray, mid_row: float) -> Tuple[int, int]:
    """Rows around `mid_row` whose level coordinate reads within the L3 body (|level - 14| < 0.45)."""
    centre = int(np.clip(np.rint(mid_row), 0, len(levels) - 1))
    first = last = centre
    while first > 0 and abs(levels[first - 1] - L3_LEVEL) < BODY_HALF_LEVEL:
        first -= 1
    while last < len(levels) - 1 and abs(levels[last + 1] - L3_LEVEL) < BODY_HALF_LEVEL:
        last += 1
    return first, last


def _confidence(run_probability: np.ndarray, level_at_mid: float) -> float:
    """How sure both heads are: the classifier's certainty inside the L3 body (its three most
    certain rows) times how exactly the level coordinate reads L3's middle at the chosen row."""
    certainty = float(np.mean(np.sort(run_probability)[-3:]))
    return certainty * float(np.exp(-abs(level_at_mid - L3_LEVEL) / CONFIDENCE_LEVEL_SCALE))


def probable_runs(probability: np.ndarray) -> List[Tuple[int, int]]:
    """[first, last] rows of each run of rows with probability above 0.5, bottom up."""
    inside = np.concatenate([[False], np.asarray(probability) > 0.5, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(int)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _best_run(probability: np.ndarray) -> Optional[Tuple[int, int]]:
    """Rows [first, last] of the run of L3-body rows (probability > 0.5) with the most mass."""
    runs = probable_runs(probability)
    return max(runs, key=lambda run: float(probability[run[0]:run[1] + 1].sum())) if runs else None


def _absence_confidence(levels: np.ndarray) -> float:
    """How far (in vertebral levels) the scan's nearest row is from L3's middle, mapped to 0..1."""
    gap = float(min(abs(levels.max() - L3_LEVEL), abs(levels.min() - L3_LEVEL)))
    return round(float(np.clip(gap / 0.5, 0, 1)), 3)


def value_at(values: np.ndarray, row: float) -> float:
    """A per-row value at a fractional row (linear between rows)."""
    return float(np.interp(row, np.arange(len(values)), values))


def _world_z(image_hu: MetaTensor, axis: int, index: int) -> float:
    voxel = np.zeros(4)
    voxel[axis], voxel[3] = index, 1.0
    affine = np.asarray(image_hu.affine, float)
    return round(float((affine @ voxel)[2]), 2)

