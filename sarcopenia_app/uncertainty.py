"""How unsure the muscle network is about one scan, measured where SMA is read: around L3.

Monte-Carlo dropout (only the dropout layers sample; instance norm stays in inference mode) plus
a left-right flip as test-time augmentation. The per-voxel predictive entropy of the averaged
muscle probability is summed over the body voxels of the L3 slices and divided by the expected
muscle voxel count there. Why that normalisation:

- averaging over the whole volume (MONAI Label's ``EpistemicScoring``) dilutes the signal with
  air, lungs and pelvis that SMA never uses, so the field of view would decide the ranking;
- a plain sum grows with patient size and slice count; the ratio "uncertain voxels per muscle
  voxel" does not (air and fat are confidently background and add almost nothing to either sum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from monai.data import MetaTensor
from torch.nn.modules.dropout import _DropoutNd

from .level import L3Location
from .segment import MuscleModel, predict_probability
from .transforms import BODY_MIN_HU

DEFAULT_PASSES = 8  # half of them on the left-right mirrored scan
MAX_SCORED_SLICES = 8  # around mid-L3: SMA is read there, and the cost grows with every slice
MIN_MUSCLE_FRACTION = 0.02  # of the body voxels: a network that finds no muscle must not divide by ~0
SCORE_KEY = "uncertainty"  # where a score lives in a datastore's image info


class DropoutSampling(torch.nn.Module):
    """The network with its dropout layers sampling whatever ``.eval()`` says, everything else in
    inference mode. ``predict_probability`` calls ``.eval()`` on the network it is given; this
    wrapper keeps dropout on through that call. Normalisation must not go to train mode: batch
    statistics would change the output for reasons that have nothing to do with the weights."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def train(self, mode: bool = True) -> "DropoutSampling":
        super().train(False)
        for module in self.network.modules():
            if isinstance(module, _DropoutNd):
                module.train(True)
        return self


@dataclass(frozen=True)
class UncertaintyScore:
    score: float  # what the ranking uses: entropy (bits) per expected muscle voxel
    mean_entropy_bits: float  # predictive entropy per body voxel of the region
    mutual_information_bits: float  # per body voxel: the part due to the weights (dropout disagreement)
    expected_muscle_voxels: float
    region: str  # "l3", or "no_l3" (L3 not found: the scan's middle slices were scored)
    first_slice: int
    last_slice: int  # inclusive, stored slice indices along the third axis
    passes: int

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def binary_entropy_bits(probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def summarise(probabilities: np.ndarray, body: np.ndarray) -> Tuple[float, float, float, float]:
    """(score, mean entropy, mean mutual information, expected muscle voxels) from per-pass muscle
    probabilities (T, ...) over the voxels where ``body`` is true."""
    if not body.any():
        return 0.0, 0.0, 0.0, 0.0
    samples = probabilities[:, body]
    mean = samples.mean(axis=0)
    entropy = binary_entropy_bits(mean)
    mutual_information = entropy - binary_entropy_bits(samples).mean(axis=0)
    expected_muscle = float(mean.sum())
    denominator = max(expected_muscle, MIN_MUSCLE_FRACTION * body.sum())
    return (float(entropy.sum() / denominator), float(entropy.mean()), float(mutual_information.mean()),
            expected_muscle)


def scored_slices(location: Optional[L3Location], slice_count: int,
                  max_slices: int = MAX_SCORED_SLICES) -> Tuple[str, int, int]:
    """(region name, first, last) slices to score: at most ``max_slices`` of the L3 body centred
    on mid-L3; without L3 ("no_l3": not found or not in the field of view) the scan's middle ones,
    so such a scan still gets a comparable score instead of none."""
    if location is not None and location.has_l3 and location.l3_slices:
        region, low, high = "l3", int(min(location.l3_slices)), int(max(location.l3_slices))
        centre = int(location.slice_index) if location.slice_index is not None else (low + high) // 2
    else:
        region, low, high, centre = "no_l3", 0, slice_count - 1, slice_count // 2
    first = int(np.clip(centre - max_slices // 2, low, max(high - max_slices + 1, low)))
    return region, first, min(first + max_slices - 1, high)


def sample_probabilities(model: MuscleModel, image_hu: MetaTensor, z_range: Tuple[int, int], passes: int,
                         device: Union[str, torch.device] = "cpu", seed: int = 0) -> np.ndarray:
    """Muscle probability (passes, X, Y, slices of z_range) with dropout sampling; odd passes see the
    scan mirrored left-right (and are mirrored back). ``seed`` makes the draw repeatable."""
    sampling = MuscleModel(DropoutSampling(model.network), model.config, model.pixdim_mm)
    margin = model.config.neighbour_slices  # the slab's edge slices keep their neighbours as context
    first, stop = max(z_range[0] - margin, 0), min(z_range[1] + margin, image_hu.shape[-1])
    keep = slice(z_range[0] - first, z_range[1] - first)
    samples = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for index in range(passes):
            mirrored = index % 2 == 1
            source = MetaTensor(torch.flip(image_hu, dims=(1,)), affine=image_hu.affine) if mirrored else image_hu
            probability = predict_probability(sampling, source, device, (first, stop))[0].numpy()
            probability = probability[::-1] if mirrored else probability
            samples.append(probability[:, :, first:stop][:, :, keep])
    model.network.eval()
    return np.stack(samples)


def score_image(model: MuscleModel, image_hu: MetaTensor, location: Optional[L3Location],
                passes: int = DEFAULT_PASSES, device: Union[str, torch.device] = "cpu",
                seed: int = 0) -> UncertaintyScore:
    """The uncertainty of a (1, X, Y, Z) HU image with its affine, around L3 where ``location`` has it."""
    if passes < 2:
        raise ValueError("uncertainty needs at least 2 passes")
    region, first, last = scored_slices(location, image_hu.shape[-1])
    probabilities = sample_probabilities(model, image_hu, (first, last + 1), passes, device, seed)
    body = np.asarray(image_hu[0, :, :, first:last + 1]) > BODY_MIN_HU
    score, entropy, mutual_information, muscle = summarise(probabilities, body)
    return UncertaintyScore(round(score, 6), round(entropy, 6), round(mutual_information, 6), round(muscle, 1),
                            region, first, last, passes)
