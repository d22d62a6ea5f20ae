"""MONAI transforms that put a CT on the network's grid, and the training-only ones.

The model grid: RAS orientation (axial slices along the third axis, inferior to superior),
fixed in-plane spacing, native slice spacing, HU windowed to [0, 1].
"""

from __future__ import annotations

from typing import Hashable, List, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    Spacingd,
)

from .ct_loader import load_ct

HU_WINDOW = (-250.0, 350.0)
DEFAULT_PIXDIM_MM = 1.0
BODY_MIN_HU = -500.0
BODY_MARGIN_PX = 8


def crop_to_body(keys: Sequence[str], image_key: str = "image") -> CropForegroundd:
    """In-plane crop to everything denser than air (body, arms, table) over the whole scan:
    less work, and the network sees the body at a similar place whatever the field of view."""
    return CropForegroundd(keys, source_key=image_key, select_fn=lambda x: x > BODY_MIN_HU,
                           margin=(BODY_MARGIN_PX, BODY_MARGIN_PX, 0), allow_smaller=True)


def window_hu(keys: KeysCollection = "image") -> ScaleIntensityRanged:
    return ScaleIntensityRanged(keys, a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True)


def to_model_grid(keys: Sequence[str], pixdim_mm: float, modes: Sequence[str]) -> List:
    """RAS orientation and in-plane resampling; slice spacing is kept (pixdim 0 = keep)."""
    return [
        Orientationd(keys, axcodes="RAS"),
        Spacingd(keys, pixdim=(pixdim_mm, pixdim_mm, 0.0), mode=list(modes)),
    ]


class LoadCTd(MapTransform):
    """Reads each key's CT with `ct_loader.load_ct`, the reader of `sarcopenia measure`, so the
    server's inference, training and scoring see the voxels and header facts the CLI sees; the
    image becomes a (1, X, Y, Z) HU MetaTensor. With `loaded_key`, the whole `LoadedCT` (DICOM
    header facts, slice UIDs) is kept there too: inference needs it, training batches cannot hold it.
    Unreadable or implausible input raises `InvalidCTError` with the reason."""

    def __init__(self, keys: KeysCollection, loaded_key: Optional[str] = None):
        super().__init__(keys)
        self.loaded_key = loaded_key

    def __call__(self, data: Mapping[Hashable, object]):
        d = dict(data)
        for key in self.key_iterator(d):
            loaded = load_ct(str(d[key]))
            d[key] = loaded.image
            if self.loaded_key:
                d[self.loaded_key] = loaded
        return d


def load_image_and_label(pixdim_mm: float) -> List:
    return [
        LoadCTd("image"),
        LoadImaged("label", image_only=False),
        EnsureChannelFirstd("label"),
        *to_model_grid(("image", "label"), pixdim_mm, ("bilinear", "nearest")),
        crop_to_body(("image", "label")),
        window_hu("image"),
    ]


class NeighbourSlicesd(MapTransform):
    """(1, X, Y, Z) -> (2n+1, X, Y, Z): channel c holds slice z + c - n (edges repeated), so a 2D
    network sees each slice with its neighbours."""

    def __init__(self, keys: KeysCollection, neighbours: int):
        super().__init__(keys)
        self.neighbours = neighbours

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = neighbour_channels(d[key], self.neighbours)
        return d


def neighbour_channels(image: torch.Tensor, neighbours: int) -> torch.Tensor:
    depth = image.shape[-1]
    index = torch.arange(depth)
    stacks = [image[0][..., (index + shift).clamp(0, depth - 1)] for shift in range(-neighbours, neighbours + 1)]
    out = torch.stack(stacks, dim=0)
    if hasattr(image, "meta"):  # keep MetaTensor metadata (affine) on the result
        out = image.__class__(out, meta=image.meta, applied_operations=image.applied_operations)
    return out


def annotated_slices(label: np.ndarray) -> np.ndarray:
    """Slices (last axis) that hold any annotation. Annotators of L3 outline a few slices and
    leave the rest empty: an empty slice means 'not annotated', never 'no muscle'."""
    arr = np.asarray(label)
    return np.nonzero(arr.reshape(-1, arr.shape[-1]).any(axis=0))[0]


class AnnotatedSliceWeightd(MapTransform):
    """Crop-sampling weights from a label: zero on slices nobody annotated (so no training sample
    ever comes from them), 1 on annotated background, `foreground_weight` on muscle (class
    imbalance: muscle is a thin ring in a large slice)."""

    def __init__(self, label_key: str, weight_key: str, foreground_weight: float = 3.0):
        super().__init__(label_key)
        self.label_key, self.weight_key = label_key, weight_key
        self.foreground_weight = foreground_weight

    def __call__(self, data):
        d = dict(data)
        label = torch.as_tensor(d[self.label_key])
        weight = torch.zeros(label.shape, dtype=torch.float32)
        slices = torch.as_tensor(annotated_slices(label.numpy()))
        if slices.numel():
            weight[..., slices] = 1.0 + (self.foreground_weight - 1.0) * (label[..., slices] > 0).float()
        d[self.weight_key] = weight
        return d


def augmentations(keys=("image", "label")) -> List:
    """Domain randomisation on 2D crops: users run the model on real CT from day one, so
    geometry, spacing, contrast, noise and sharpness all vary more than the phantom does."""
    return [
        RandAffined(keys, prob=0.8, rotate_range=0.25, scale_range=(0.2, 0.2), shear_range=0.05,
                    translate_range=(20, 20), mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandScaleIntensityd("image", factors=0.15, prob=0.5),
        RandShiftIntensityd("image", offsets=0.05, prob=0.5),
        RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),
        RandGaussianSmoothd("image", sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), prob=0.3),
        RandGaussianNoised("image", std=0.04, prob=0.5),
    ]


class CropToAnnotatedSlabd(MapTransform):
    """Keep the annotated slices (plus `margin` neighbours for context) of every key: validation
    then costs a few slices per volume, not the whole scan."""

    def __init__(self, keys: KeysCollection, label_key: str, margin: int, max_slices: int = 24):
        super().__init__(keys)
        self.label_key, self.margin, self.max_slices = label_key, margin, max_slices

    def __call__(self, data):
        d = dict(data)
        slices = annotated_slices(np.asarray(d[self.label_key]))
        if slices.size == 0:
            return d
        if slices.size > self.max_slices:
            slices = slices[(slices.size - self.max_slices) // 2:][: self.max_slices]
        depth = d[self.label_key].shape[-1]
        first, last = max(int(slices[0]) - self.margin, 0), min(int(slices[-1]) + self.margin + 1, depth)
        for key in self.key_iterator(d):
            d[key] = d[key][..., first:last]
        return d


class MaskUnannotatedSlicesd(MapTransform):
    """Zero prediction and label on slices without annotation, so metrics score only what an
    annotator actually outlined."""

    def __init__(self, keys: KeysCollection, label_key: str):
        super().__init__(keys)
        self.label_key = label_key

    def __call__(self, data):
        d = dict(data)
        label = torch.as_tensor(d[self.label_key])
        annotated = torch.as_tensor(annotated_slices(label[1:].cpu().numpy() if label.shape[0] > 1 else label.cpu().numpy()))
        keep = torch.zeros(label.shape[-1], dtype=torch.bool)
        keep[annotated] = True
        for key in self.key_iterator(d):
            d[key] = d[key] * keep.to(d[key].device)
        return d
