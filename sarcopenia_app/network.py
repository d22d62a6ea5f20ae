"""The skeletal-muscle network: a 2.5D MONAI UNet.

2.5D (a slice plus its neighbours as channels) because SMA is read on axial slices, neighbours
tell bowel (which moves between slices) from muscle (which does not), and a 2D network runs in
seconds per volume on a laptop CPU. Instance norm and dropout: dropout makes Monte-Carlo
uncertainty possible, and instance norm keeps train-mode behaviour honest (batch norm in train
mode would fake uncertainty).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import torch
from monai.networks.layers import Norm
from monai.networks.nets import UNet


@dataclass(frozen=True)
class NetworkConfig:
    neighbour_slices: int = 1  # slices on each side given as extra channels
    channels: Tuple[int, ...] = (16, 32, 64, 128, 256)
    res_units: int = 2
    dropout: float = 0.1

    @property
    def in_channels(self) -> int:
        return 2 * self.neighbour_slices + 1

    @property
    def size_divisor_px(self) -> int:
        """What an input slice's sides must divide by: the UNet halves them once per level below the top."""
        return 2 ** (len(self.channels) - 1)

    def fitting_crop_px(self, requested_px: int) -> int:
        """The training crop side nearest above `requested_px` that the network can take: a multiple
        of `size_divisor_px`, and at least two of them so that instance norm at the deepest level
        sees more than one pixel (a crop typed for a shallower network still trains)."""
        divisor = self.size_divisor_px
        return max(-(-int(requested_px) // divisor), 2) * divisor

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def with_fields(self, fields: Dict[str, Any]) -> "NetworkConfig":
        """This config with some fields replaced (e.g. `{"channels": [...]}` read from JSON)."""
        return NetworkConfig.from_dict({**self.to_dict(), **fields})

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "NetworkConfig":
        values = dict(values)
        values["channels"] = tuple(values["channels"])
        return cls(**values)


def build_network(config: NetworkConfig = NetworkConfig()) -> torch.nn.Module:
    """Background / skeletal-muscle logits for each axial slice."""
    return UNet(
        spatial_dims=2,
        in_channels=config.in_channels,
        out_channels=2,
        channels=config.channels,
        strides=(2,) * (len(config.channels) - 1),
        num_res_units=config.res_units,
        norm=Norm.INSTANCE,
        dropout=config.dropout,
    )
