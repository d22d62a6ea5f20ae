"""Training the muscle network on phantoms generated on the fly: no dataset on disk, every batch
from cases the network has not seen, drawn with the generator's wide and stress variation.

Each case is a short stack around L3 (where SMA is read), put on the model grid exactly as
inference does (`segment.py`: stored orientation and affine -> RAS, 1 mm in-plane, body crop, HU
window), then cut into 2D crops weighted towards muscle and augmented as the app's train task
does (`lib/trainers/muscle_seg.py`).
"""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence, Tuple

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped, RandWeightedCropd, SpatialPadd, SqueezeDimd

from .phantom import generate_case
from .phantom.writer import stored_layout
from .transforms import AnnotatedSliceWeightd, NeighbourSlicesd, augmentations, crop_to_body, to_model_grid, window_hu

STACK_SLICES = 12  # slices per generated case: a level (L3 unless asked) and its neighbours


def case_on_model_grid(case, pixdim_mm: float) -> dict:
    """{"image", "label"} (1, X, Y, Z) of a phantom case on the model grid, via its stored layout."""
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    meta = torch.as_tensor(affine, dtype=torch.float64)
    data = {"image": MetaTensor(torch.from_numpy(to_stored(case.hu).astype(np.float32))[None], affine=meta),
            "label": MetaTensor(torch.from_numpy(to_stored(case.muscle).astype(np.float32))[None], affine=meta)}
    keys = ("image", "label")
    return Compose([*to_model_grid(keys, pixdim_mm, ("bilinear", "nearest")), crop_to_body(keys),
                    window_hu("image")])(data)


def crop_transforms(neighbours: int, crop_px: int, crops_per_case: int) -> Compose:
    return Compose([
        NeighbourSlicesd("image", neighbours),
        AnnotatedSliceWeightd("label", "weight", 3.0),
        SpatialPadd(("image", "label", "weight"), spatial_size=(crop_px, crop_px, -1)),
        RandWeightedCropd(("image", "label"), w_key="weight", spatial_size=(crop_px, crop_px, 1),
                          num_samples=crops_per_case),
        SqueezeDimd(("image", "label"), dim=-1),
        *augmentations(),
        EnsureTyped(("image", "label"), track_meta=False),
    ])


def phantom_cases(seeds: Sequence[int], variations: Sequence[str], start_index: int = 0,
                  matrix: int = 512, levels: Sequence[str] = ("L3",)) -> Iterator:
    """Endless short stacks, each around the middle of a level it contains: seeds, variations and
    levels in turn, indices counting up. Stacks at L3 only teach L3: the app segments the whole
    scan, and a run on L3 stacks alone lost accuracy at T12 and L5 (docs/segmentation.md)."""
    level_turns = itertools.cycle(levels)
    for index in itertools.count(start_index):
        for seed, variation in zip(seeds, itertools.cycle(variations)):
            level = next(level_turns)
            coverage = "abdomen" if level == "L3" else "abdomen_pelvis"  # T10 to the pubis: T12..L5 all in
            case = generate_case(seed, index, matrix=matrix, max_slices=STACK_SLICES, variation=variation,
                                 acquisition_overrides={"coverage": coverage}, centre_level=level)
            if case.level_mid_index(level) is not None:
                yield case


def crop_batches(cases: Iterator, pixdim_mm: float, neighbours: int, crop_px: int, crops_per_case: int,
                 batch_size: int, seed: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(image, label) batches; crops of several cases are shuffled together. Every crop is used
    once and the pool stays under 2 batches plus one case's crops (crops are views that hold their
    whole case in memory: a pool that grew by a case per batch ran a long training out of memory)."""
    transform = crop_transforms(neighbours, crop_px, crops_per_case)
    transform.set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    pool = []
    for case in cases:
        pool += transform(case_on_model_grid(case, pixdim_mm))
        while len(pool) >= 2 * batch_size:
            order = rng.permutation(len(pool))
            take, pool = [pool[i] for i in order[:batch_size]], [pool[i] for i in order[batch_size:]]
            yield torch.stack([t["image"] for t in take]), torch.stack([t["label"] for t in take])
