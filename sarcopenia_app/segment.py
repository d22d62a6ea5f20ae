"""Skeletal-muscle inference on a whole CT: one implementation for the server, the CLI and tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.networks.utils import copy_model_state
from monai.transforms import Compose, ResampleToMatch, SpatialCrop

from .network import NetworkConfig, build_network
from .transforms import DEFAULT_PIXDIM_MM, NeighbourSlicesd, crop_to_body, to_model_grid, window_hu

CHUNK_SLICES = 32  # slices resampled and segmented at once: bounds memory on long scans


@dataclass
class MuscleModel:
    network: torch.nn.Module
    config: NetworkConfig
    pixdim_mm: float = DEFAULT_PIXDIM_MM

    def state(self) -> dict:
        """What a model file holds: weights plus what is needed to rebuild and use them."""
        return {"model": self.network.state_dict(), "network_config": self.config.to_dict(),
                "pixdim_mm": self.pixdim_mm}


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> MuscleModel:
    return model_from_state(torch.load(str(path), map_location=device, weights_only=True), device)


def model_from_state(state: dict, device: Union[str, torch.device] = "cpu") -> MuscleModel:
    """The model a `MuscleModel.state()` dict describes (a model file, or one kept inside a training state)."""
    config = NetworkConfig.from_dict(state["network_config"])
    network = build_network(config)
    network.load_state_dict(state["model"])
    return MuscleModel(network.to(device).eval(), config, float(state["pixdim_mm"]))


def published_network(path: Union[str, Path], default: NetworkConfig) -> NetworkConfig:
    """The shape of the network in a published model file (what fine-tuning `init=current` must
    build to load it), or `default` when no model is published yet."""
    if not Path(path).exists():
        return default
    return NetworkConfig.from_dict(torch.load(str(path), map_location="cpu", weights_only=True)["network_config"])


def reshaped(start: MuscleModel, network_fields: Dict[str, Any]) -> Tuple[MuscleModel, int]:
    """A network of another shape (e.g. one level deeper) warm-started from a trained model: every
    tensor whose name and shape match is copied, the rest is random. Returns it and the number of
    tensors copied. A bigger network then trains from what the smaller one learned, not from nothing."""
    config = start.config.with_fields(network_fields)
    network = build_network(config)
    _, copied, _ = copy_model_state(network, start.network)
    return MuscleModel(network, config, start.pixdim_mm), len(copied)


def predict_probability(model: MuscleModel, image_hu: MetaTensor, device: Union[str, torch.device] = "cpu",
                        z_range: Optional[Tuple[int, int]] = None, sw_batch_size: int = 8,
                        chunk_slices: int = CHUNK_SLICES, flip: bool = False) -> MetaTensor:
    """Muscle probability (1, X, Y, Z) on the input grid for a (1, X, Y, Z) HU image with its affine.

    `z_range` ([first, last) along the stored third axis) limits the work to a slab, e.g. around L3;
    slices outside it get probability 0. The slab is processed `chunk_slices` at a time (with the
    neighbour slices the network reads as context), so memory does not grow with the scan length.
    `flip`: test-time augmentation, the mean of the slice and its left-right mirror (twice the work).
    """
    first, last = z_range if z_range is not None else (0, image_hu.shape[-1])
    context = model.config.neighbour_slices
    full = torch.zeros(image_hu.shape, dtype=torch.float32)
    for start in range(first, last, chunk_slices):
        stop = min(start + chunk_slices, last)
        lo, hi = max(start - context, 0), min(stop + context, image_hu.shape[-1])
        slab = _slab_probability(model, image_hu, (lo, hi), device, sw_batch_size, flip)
        full[..., start:stop] = slab[..., start - lo:stop - lo]
    return MetaTensor(full, affine=image_hu.affine)


def _slab_probability(model: MuscleModel, image_hu: MetaTensor, z_range: Tuple[int, int],
                      device: Union[str, torch.device], sw_batch_size: int, flip: bool = False) -> torch.Tensor:
    """Probability (1, X, Y, z_range length) of the slices [first, last) on their input grid."""
    source = SpatialCrop(roi_start=(0, 0, z_range[0]), roi_end=(*image_hu.shape[1:3], z_range[1]))(image_hu)
    data = {"image": MetaTensor(source.float(), affine=source.affine)}
    data = Compose([*to_model_grid(("image",), model.pixdim_mm, ("bilinear",)), crop_to_body(("image",)),
                    window_hu("image"),
                    NeighbourSlicesd("image", model.config.neighbour_slices)])(data)
    model_input = data["image"]
    # one window covering the whole (body-cropped) slice: no overlapping windows to pay for
    divisor = model.config.size_divisor_px
    roi = [int(np.ceil(size / divisor) * divisor) for size in model_input.shape[1:3]]
    inferer = SliceInferer(roi_size=roi, sw_batch_size=sw_batch_size, spatial_dim=2, overlap=0.0,
                           progress=False)
    model.network.eval()
    with torch.inference_mode():
        probability = inferer(model_input.as_tensor()[None].to(device), _probability_network(model.network, flip))
        probability = probability[0, 1:].cpu()
    probability = MetaTensor(probability, affine=model_input.affine)
    return ResampleToMatch(mode="bilinear", padding_mode="zeros")(probability, img_dst=source).as_tensor()


def _probability_network(network: torch.nn.Module, flip: bool):
    """Softmax of the network, or the mean of it on the slice and on its left-right mirror
    (the first in-plane axis of the RAS model grid)."""
    def run(batch: torch.Tensor) -> torch.Tensor:
        probability = torch.softmax(network(batch), dim=1)
        if flip:
            probability = (probability + torch.softmax(network(batch.flip(-2)), dim=1).flip(-2)) / 2
        return probability
    return run


def predict_mask(model: MuscleModel, image_hu: MetaTensor, device: Union[str, torch.device] = "cpu",
                 z_range: Optional[Tuple[int, int]] = None, chunk_slices: int = CHUNK_SLICES,
                 flip: bool = False) -> np.ndarray:
    """Binary muscle mask (X, Y, Z) uint8 on the input grid."""
    probability = predict_probability(model, image_hu, device, z_range, chunk_slices=chunk_slices, flip=flip)
    return (probability[0].numpy() > 0.5).astype(np.uint8)
