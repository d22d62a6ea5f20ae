"""The self-supervised model: the segmentation UNet's twin that reconstructs its input, plus a
projection head on its bottleneck for the contrastive loss, and the hand-over of its weights to
the segmentation network.

Why a twin rather than a new architecture: transfer only works tensor by tensor, so pretraining
must train the very layers that segmentation later uses. The twin is built from the segmentation
network's own hyperparameters (read back from the built UNet, so the two cannot drift apart) and
differs only in its output layer: as many channels as the input (the slice and its neighbours),
not two classes.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from monai.networks.utils import copy_model_state
from torch import nn

from ..network import NetworkConfig, build_network

PROJECTION_DIM = 64


def reconstruction_twin(config: NetworkConfig) -> UNet:
    """The segmentation UNet of `config` with an output of `in_channels` channels."""
    segmentation = build_network(config)
    return UNet(spatial_dims=segmentation.dimensions, in_channels=segmentation.in_channels,
                out_channels=segmentation.in_channels, channels=segmentation.channels,
                strides=segmentation.strides, kernel_size=segmentation.kernel_size,
                up_kernel_size=segmentation.up_kernel_size, num_res_units=segmentation.num_res_units,
                act=segmentation.act, norm=segmentation.norm, dropout=segmentation.dropout,
                bias=segmentation.bias, adn_ordering=segmentation.adn_ordering)


def bottleneck_of(unet: UNet) -> nn.Module:
    """The deepest layer of a MONAI UNet (the end of its encoder).

    MONAI nests each level as Sequential(down, SkipConnection(next level), up); the innermost
    SkipConnection wraps the bottom layer instead of another level.
    """
    level = unet.model
    while True:
        inner = level[1].submodule
        if isinstance(inner, nn.Sequential) and len(inner) == 3 and isinstance(inner[1], SkipConnection):
            level = inner
        else:
            return inner


class SelfSupervisedNet(nn.Module):
    """forward(x) -> (reconstruction of x, embedding of x's bottleneck features).

    The embedding (global average pool of the bottleneck, then a two-layer projection head, as in
    SimCLR) is what the contrastive loss compares between two views of one crop; the head is
    thrown away after pretraining.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.twin = reconstruction_twin(config)
        width = config.channels[-1]
        self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                        nn.Linear(width, PROJECTION_DIM))
        self._features: List[torch.Tensor] = []
        bottleneck_of(self.twin).register_forward_hook(lambda _m, _i, out: self._features.append(out))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self._features.clear()
        reconstruction = self.twin(x)
        pooled = self._features.pop().mean(dim=tuple(range(2, x.dim())))
        return reconstruction, self.projection(pooled)


def start_from_segmentation(model: SelfSupervisedNet, segmentation_state: Mapping[str, torch.Tensor]) -> List[str]:
    """Put a trained segmentation network's tensors into the twin (every one that fits: all but the
    output layers), so that pretraining continues from a shipped model instead of random weights.
    Returns the names loaded."""
    _, loaded, _ = copy_model_state(model.twin, dict(segmentation_state))
    return sorted(loaded)


def segmentation_weights(twin_state: Mapping[str, torch.Tensor], config: NetworkConfig
                         ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The twin's tensors that fit the segmentation network of `config` (same name, same shape):
    the whole encoder and every decoder layer but the output one. Returns them, keyed as the
    segmentation network names them, and the names of the twin's tensors that did not fit."""
    segmentation = build_network(config)
    _, loaded, _ = copy_model_state(segmentation, dict(twin_state), inplace=False)
    kept = {name: twin_state[name].detach().clone() for name in loaded}
    skipped = sorted(set(twin_state) - set(kept))
    return kept, skipped
