"""Training data and loop for the level locator: phantoms carry every vertebra's exact extent.

A sample is a projection plus, per row, the true level coordinate, whether the row lies in the
L3 body and whether it lies in any vertebral body (not a disc). Augmentation imitates what real scans vary in: coverage (random cuts along z, including
cuts that remove L3 so that "not in the field of view" is learned, and cuts that end next to a
measured level's middle so that the scan's edge rows read their level too), body size (z scaling),
intensity and noise, side-to-side shifts and mirroring.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from ..phantom.generate import PhantomCase
from ..phantom.writer import stored_layout
from .locator import L3_LEVEL, LEVEL_NAMES, LOWEST_TRAINED_LEVEL, ROW_DIVISOR, LevelLocator, build_locator
from .projection import CHANNELS, ROW_MM, project


MAX_POSITIVE_WEIGHT = 5.0  # L3 rows are rare; a larger weight makes every other row look half-L3
# every measured level (T12..L5, level_measurements.py) is read from the level coordinate: rows from
# T11.5 to S1 (each measured segment and its outer boundaries) count double, rows near L3 triple
MEASURED_SPAN = (LEVEL_NAMES.index("T12") - 0.5, float(LEVEL_NAMES.index("S1")))
L3_NEAR_LEVELS = 1.5
EDGE_CUT_PROBABILITY = 0.5  # share of views with one end cut within EDGE_CUT_LEVELS of a measured level's middle
EDGE_CUT_LEVELS = 0.6
# smooth-L1 turns linear beyond this error (levels): a tenth of a level (about 3 mm) still pulls with
# full force, as every level's slice, not only L3's, must land within its body
REGRESSION_BETA = 0.1


@dataclass
class LevelSample:
    image: np.ndarray  # (CHANNELS, W, R)
    level: np.ndarray  # (R,) level coordinate
    in_l3: np.ndarray  # (R,) 0/1
    in_body: np.ndarray  # (R,) 0/1: the row lies in some vertebral body, not in a disc


def level_coordinate(case: PhantomCase, z_anatomical_mm: np.ndarray) -> np.ndarray:
    """Piecewise-linear level coordinate: LEVEL_NAMES index at each body's middle, clipped beyond
    T1 and S1. Training clips it again above LOWEST_TRAINED_LEVEL (`augment`), so cached samples
    serve whatever that level is."""
    mids = np.array([lv.z_mid for lv in case.spine.levels])  # T1 first: decreasing z
    return np.interp(z_anatomical_mm, mids[::-1], np.arange(len(LEVEL_NAMES), dtype=float)[::-1])


def phantom_sample(case: PhantomCase) -> LevelSample:
    """The projection exactly as inference computes it (from the stored array and affine)."""
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    image = MetaTensor(torch.from_numpy(to_stored(case.hu).astype(np.float32))[None], affine=torch.as_tensor(affine))
    projection = project(image)
    z = case.z_anatomical_mm[0] + np.arange(projection.rows) * ROW_MM
    l3 = case.spine.by_name["L3"]
    in_l3 = ((z >= l3.z_bottom) & (z <= l3.z_top)).astype(np.float32)
    in_body = np.any([(z >= lv.z_bottom) & (z <= lv.z_top) for lv in case.spine.levels], axis=0).astype(np.float32)
    return LevelSample(projection.image, level_coordinate(case, z).astype(np.float32), in_l3, in_body)


def augment(sample: LevelSample, rows: int, rng: np.random.Generator) -> Tuple[np.ndarray, ...]:
    """A random view of `rows` rows: (image, level, in_l3, in_body, valid) with `valid` 0 on padding."""
    image, level = sample.image, np.maximum(sample.level, LOWEST_TRAINED_LEVEL)
    scale = rng.uniform(0.85, 1.15)  # patient size: stretch along z
    n = max(int(round(image.shape[-1] * scale)), 2)
    image = F.interpolate(torch.from_numpy(image)[None], size=(image.shape[1], n), mode="bilinear",
                          align_corners=True)[0].numpy()
    source = np.linspace(0, len(level) - 1, n)
    level = np.interp(source, np.arange(len(level)), level)
    nearest = np.rint(source).astype(int)
    in_l3, in_body = sample.in_l3[nearest], sample.in_body[nearest]
    length = int(rng.integers(min(24, n), n + 1))  # coverage: any cut, L3 or not
    start = _edge_cut_start(level, length, rng) if rng.random() < EDGE_CUT_PROBABILITY else None
    start = int(rng.integers(0, n - length + 1)) if start is None else start
    view = slice(start, start + length)
    image, level, in_l3, in_body = image[..., view], level[view], in_l3[view], in_body[view]
    image = image * rng.uniform(0.8, 1.2, (CHANNELS, 1, 1)) + rng.normal(0, 0.03, image.shape)
    image = np.roll(image, int(rng.integers(-12, 13)), axis=1)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    out = np.zeros((CHANNELS, image.shape[1], rows), np.float32)
    keep = min(length, rows)
    out[..., :keep] = image[..., :keep]
    valid = np.zeros(rows, np.float32)
    valid[:keep] = 1
    pad = lambda v: np.concatenate([v[:keep], np.zeros(rows - keep)]).astype(np.float32)  # noqa: E731
    return out, pad(level), pad(in_l3), pad(in_body), valid


def _edge_cut_start(level: np.ndarray, length: int, rng: np.random.Generator) -> Optional[int]:
    """A view start that puts the view's lower or upper end near the middle of a random measured level
    (T12..L5), or None when that level is not in this sample or the view would not fit."""
    target = rng.integers(LEVEL_NAMES.index("T12"), LEVEL_NAMES.index("L5") + 1) + rng.uniform(-1, 1) * EDGE_CUT_LEVELS
    rows = np.nonzero(np.diff(np.sign(level - target)))[0]  # the coordinate grows towards the feet (row 0)
    if rows.size == 0:
        return None
    edge = int(rows[0])
    start = edge if rng.random() < 0.5 else edge - length + 1  # lower end at the level, or upper end
    return start if 0 <= start <= len(level) - length else None


def batches(samples: Sequence[LevelSample], batch_size: int, rng: np.random.Generator,
            max_rows: int = 192) -> Iterator[List[torch.Tensor]]:
    """One epoch of augmented batches; every batch has one random length (a multiple of 16)."""
    order = rng.permutation(len(samples))
    for start in range(0, len(order), batch_size):
        rows = int(rng.integers(2, max_rows // ROW_DIVISOR + 1)) * ROW_DIVISOR
        items = [augment(samples[i], rows, rng) for i in order[start:start + batch_size]]
        yield [torch.from_numpy(np.stack(parts)) for parts in zip(*items)]


def loss(prediction: torch.Tensor, level: torch.Tensor, in_l3: torch.Tensor, in_body: torch.Tensor,
         valid: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 on the level coordinate (in levels) plus BCE on the L3 rows and, for a network
    with the body head, BCE on the vertebral-body rows; padding ignored. Rows of the measured
    levels count double for the regression and rows near L3 triple: that is where the answers
    are read."""
    measured = (level >= MEASURED_SPAN[0]) & (level <= MEASURED_SPAN[1])
    near = 1.0 + measured.float() + (torch.abs(level - L3_LEVEL) < L3_NEAR_LEVELS).float()
    regression = F.smooth_l1_loss(prediction[:, 0], level, reduction="none", beta=REGRESSION_BETA) * near
    positive = in_l3.sum().clamp(min=1)
    pos_weight = ((valid.sum() - positive) / positive).clamp(1, MAX_POSITIVE_WEIGHT)
    classification = F.binary_cross_entropy_with_logits(prediction[:, 1], in_l3, reduction="none",
                                                        pos_weight=pos_weight)
    if prediction.shape[1] > 2:
        classification = classification + F.binary_cross_entropy_with_logits(prediction[:, 2], in_body, reduction="none")
    weight = valid.sum().clamp(min=1)
    return ((regression + classification) * valid).sum() / weight


def with_body_head(locator: LevelLocator) -> LevelLocator:
    """A locator with the vertebral-body head whose first two outputs are `locator`'s, to fine-tune
    a file trained without that head: every weight is copied where the shapes overlap, and the new
    output's channel feeds nothing the old outputs read (its input weights into them are zero)."""
    if locator.config.body_head:
        return locator
    widened = build_locator(replace(locator.config, body_head=True))
    old = locator.network.state_dict()
    state = widened.network.state_dict()
    for name, tensor in state.items():
        source = old[name]
        if source.shape == tensor.shape:
            state[name] = source.clone()
            continue
        overlap = tuple(slice(0, min(a, b)) for a, b in zip(source.shape, tensor.shape))
        tensor[overlap] = source[overlap]
        if tensor.dim() == 4 and tensor.shape[0] == tensor.shape[1]:  # the last residual conv: out x in
            tensor[:source.shape[0], source.shape[1]:] = 0.0
    widened.network.load_state_dict(state)
    return widened


def train_epoch(locator: LevelLocator, samples: Sequence[LevelSample], optimizer: torch.optim.Optimizer,
                rng: np.random.Generator, batch_size: int = 8, device: str = "cpu") -> float:
    locator.network.train()
    total, count = 0.0, 0
    for image, *targets in batches(samples, batch_size, rng):
        optimizer.zero_grad()
        value = loss(locator.network(image.to(device)), *(t.to(device) for t in targets))
        value.backward()
        optimizer.step()
        total, count = total + float(value), count + 1
    return total / max(count, 1)
