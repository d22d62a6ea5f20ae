"""Skeletal-muscle inference on a whole CT: one implementation for the server, the CLI and tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import Compose, ResampleToMatch, SpatialCrop

from .network import NetworkConfig, build_network
from .transforms import DEFAULT_PIXDIM_MM, NeighbourSlicesd, crop_to_body, to_model_grid, window_hu

DIVISOR_PX = 16  # the UNet halves the slice four times


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
    state = torch.load(str(path), map_location=device, weights_only=True)
    config = NetworkConfig.from_dict(state["network_config"])
    network = build_network(config)
    network.load_state_dict(state["model"])
    return MuscleModel(network.to(device).eval(), config, float(state["pixdim_mm"]))


def predict_probability(model: MuscleModel, image_hu: MetaTensor, device: Union[str, torch.device] = "cpu",
                        z_range: Optional[Tuple[int, int]] = None, sw_batch_size: int = 8) -> MetaTensor:
    """Muscle probability (1, X, Y, Z) on the input grid for a (1, X, Y, Z) HU image with its affine.

    `z_range` ([first, last) along the stored third axis) limits the work to a slab, e.g. around L3;
    slices outside it get probability 0.
    """
    source = image_hu
    if z_range is not None:
        source = SpatialCrop(roi_start=(0, 0, z_range[0]), roi_end=(*image_hu.shape[1:3], z_range[1]))(image_hu)
    data = {"image": MetaTensor(source.float(), affine=source.affine)}
    data = Compose([*to_model_grid(("image",), model.pixdim_mm, ("bilinear",)), crop_to_body(("image",)),
                    window_hu("image"),
                    NeighbourSlicesd("image", model.config.neighbour_slices)])(data)
    model_input = data["image"]
    # one window covering the whole (body-cropped) slice: no overlapping windows to pay for
    roi = [int(np.ceil(size / DIVISOR_PX) * DIVISOR_PX) for size in model_input.shape[1:3]]
    inferer = SliceInferer(roi_size=roi, sw_batch_size=sw_batch_size, spatial_dim=2, overlap=0.0,
                           progress=False)
    model.network.eval()
    with torch.no_grad():
        logits = inferer(model_input.as_tensor()[None].to(device), model.network)
    probability = torch.softmax(logits, dim=1)[0, 1:].cpu()
    probability = MetaTensor(probability, affine=model_input.affine)
    back = ResampleToMatch(mode="bilinear", padding_mode="zeros")(probability, img_dst=source)
    if z_range is None:
        return back
    full = torch.zeros(image_hu.shape, dtype=back.dtype)
    full[..., z_range[0]:z_range[1]] = back.as_tensor()
    return MetaTensor(full, affine=image_hu.affine)


def predict_mask(model: MuscleModel, image_hu: MetaTensor, device: Union[str, torch.device] = "cpu",
                 z_range: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Binary muscle mask (X, Y, Z) uint8 on the input grid."""
    probability = predict_probability(model, image_hu, device, z_range)
    return (probability[0].numpy() > 0.5).astype(np.uint8)
