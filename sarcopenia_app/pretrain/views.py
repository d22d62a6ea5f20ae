"""Training samples for self-supervised pretraining: unlabelled CT -> pairs of corrupted views.

Each volume goes on the segmentation model's grid (same orientation, spacing, body crop and HU
window as training and inference, so the pretrained layers see the inputs they will see later);
random 2D crops with their neighbour slices as channels are drawn from it; each crop gives two
views that differ by intensity jitter, noise, masked-out boxes (inpainting) and locally shuffled
boxes, as in MONAI's self-supervised pretraining tutorial. The clean crop is kept beside each view
as the reconstruction target.
"""

from __future__ import annotations

from typing import Dict, List

from monai.config import KeysCollection
from monai.transforms import (
    CopyItemsd,
    EnsureTyped,
    MapTransform,
    RandCoarseDropoutd,
    RandCoarseShuffled,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropSamplesd,
    SpatialPadd,
)

from ..transforms import LoadCTd, crop_to_body, to_model_grid, window_hu

VIEWS = ("view_a", "view_b")


def target_key(view: str) -> str:
    return f"{view}_target"


def volume_on_model_grid(pixdim_mm: float) -> List:
    """Deterministic part: file -> windowed (1, X, Y, Z) volume on the model grid (cacheable)."""
    return [
        LoadCTd("image"),
        *to_model_grid(("image",), pixdim_mm, ("bilinear",)),
        crop_to_body(("image",)),
        window_hu("image"),
    ]


class SlabToChannelsd(MapTransform):
    """(1, X, Y, 2n+1) slab -> (2n+1, X, Y): channel c is slice z + c - n, the same channel
    order the segmentation network gets from `NeighbourSlicesd`."""

    def __init__(self, keys: KeysCollection):
        super().__init__(keys)

    def __call__(self, data: Dict) -> Dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key][0].permute(2, 0, 1)
        return d


def crops(crop_px: int, neighbour_slices: int, samples_per_volume: int) -> List:
    """Random in-plane crops of 2n+1 consecutive slices, as neighbour-slice channels."""
    size = (crop_px, crop_px, 2 * neighbour_slices + 1)
    return [
        SpatialPadd("image", spatial_size=size),  # slim patients, thin slabs
        RandSpatialCropSamplesd("image", roi_size=size, num_samples=samples_per_volume, random_size=False),
        SlabToChannelsd("image"),
        EnsureTyped("image", track_meta=False),
    ]


def corrupted_view(view: str, crop_px: int) -> List:
    """Intensity jitter (kept in the target: not the network's job to undo it), then noise,
    inpainting boxes and locally shuffled boxes (only in the input: the network must undo them)."""
    box = (max(crop_px // 8, 2),) * 2
    largest = (max(crop_px // 4, 3),) * 2
    return [
        RandScaleIntensityd(view, factors=0.1, prob=0.5),
        RandShiftIntensityd(view, offsets=0.05, prob=0.5),
        CopyItemsd(view, names=target_key(view)),
        RandGaussianNoised(view, std=0.02, prob=0.5),
        RandCoarseDropoutd(view, holes=4, max_holes=8, spatial_size=box, max_spatial_size=largest,
                           dropout_holes=True, fill_value=(0.0, 1.0), prob=0.9),
        RandCoarseShuffled(view, holes=4, max_holes=8, spatial_size=box, max_spatial_size=largest, prob=0.8),
    ]


def two_views(crop_px: int) -> List:
    return [
        CopyItemsd("image", times=len(VIEWS), names=list(VIEWS)),
        *(transform for view in VIEWS for transform in corrupted_view(view, crop_px)),
    ]
