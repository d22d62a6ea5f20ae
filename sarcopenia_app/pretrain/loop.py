"""The self-supervised pretraining run: one implementation for the server task, the CLI, the
benchmark and the tests.

Loss per batch of crops = L1 reconstruction of both corrupted views (inpainting of masked boxes,
undoing local shuffles: the network must learn what CT anatomy looks like to fill them in)
+ `contrastive_weight` x NT-Xent contrastive loss between the two views' bottleneck embeddings
(MONAI `ContrastiveLoss`: the encoder must map two corruptions of one crop close together and
other crops apart). A run can start from a trained segmentation model (`start`: a hospital's
shipped model, adapted to its own unlabelled scans) instead of random weights. The run length is
`max_epochs` passes over the volumes; it continues from its checkpoint, so asking again with the
same settings after a stop finishes the run, and asking with more epochs extends it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from monai.data import CacheDataset, DataLoader
from monai.losses import ContrastiveLoss
from monai.transforms import Compose

from ..network import NetworkConfig
from ..segment import MuscleModel
from .checkpoint import Progress, resume, save_checkpoint, write_encoder
from .model import SelfSupervisedNet, start_from_segmentation
from .views import VIEWS, crops, target_key, two_views, volume_on_model_grid

logger = logging.getLogger(__name__)

FINAL_LR_FRACTION = 0.05


@dataclass(frozen=True)
class PretrainSettings:
    max_epochs: int = 50
    lr: float = 1e-3
    crop_px: int = 96
    samples_per_volume: int = 8
    volumes_per_batch: int = 2  # a batch holds volumes_per_batch x samples_per_volume crops
    contrastive_weight: float = 0.1
    temperature: float = 0.5
    checkpoint_every_steps: int = 50
    cache_rate: float = 0.0  # fraction of volumes kept in memory on the model grid (1.0 for small sets)
    workers: int = 0
    seed: Optional[int] = None
    restart: bool = False  # ignore an existing checkpoint and start again

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> "PretrainSettings":
        """Typed settings from a server request or CLI values; unknown keys are ignored."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in request and request[f.name] is not None:
                value = request[f.name]
                if f.name == "restart":
                    values[f.name] = value if isinstance(value, bool) else str(value).lower() == "true"
                elif f.name == "seed":
                    values[f.name] = int(value)
                else:
                    values[f.name] = type(f.default)(value)
        return cls(**values)


def sample_transforms(config: NetworkConfig, pixdim_mm: float, settings: PretrainSettings) -> Compose:
    crop_px = config.fitting_crop_px(settings.crop_px)
    return Compose([*volume_on_model_grid(pixdim_mm),
                    *crops(crop_px, config.neighbour_slices, settings.samples_per_volume),
                    *two_views(crop_px)])


def ssl_losses(model: SelfSupervisedNet, batch: Mapping[str, torch.Tensor], contrastive: ContrastiveLoss,
               contrastive_weight: float) -> Dict[str, torch.Tensor]:
    """Reconstruction, contrastive and total loss of one batch of view pairs."""
    views = torch.cat([batch[view] for view in VIEWS])
    targets = torch.cat([batch[target_key(view)] for view in VIEWS])
    reconstruction, embedding = model(views)
    first, second = embedding.chunk(2)
    losses = {"reconstruction": torch.nn.functional.l1_loss(reconstruction, targets),
              "contrastive": contrastive(first, second)}
    losses["loss"] = losses["reconstruction"] + contrastive_weight * losses["contrastive"]
    return losses


def learning_rate(step: int, total_steps: int, lr: float) -> float:
    """Cosine decay to FINAL_LR_FRACTION x lr; a function of the step alone, so a resumed run
    continues the schedule exactly where the stopped one was."""
    progress = min(step / max(total_steps, 1), 1.0)
    return lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def training_samples(images: Sequence[Union[str, Path]], config: NetworkConfig, pixdim_mm: float,
                     settings: PretrainSettings, step: int) -> DataLoader:
    """Batches of corrupted view pairs; the volumes on the model grid are cached (`cache_rate`)."""
    transforms = sample_transforms(config, pixdim_mm, settings)
    if settings.seed is not None:
        transforms.set_random_state(seed=settings.seed + step)
    dataset = CacheDataset([{"image": str(path)} for path in images], transforms, cache_rate=settings.cache_rate,
                           num_workers=max(settings.workers, 1), progress=False)
    return DataLoader(dataset, batch_size=settings.volumes_per_batch, shuffle=True, num_workers=settings.workers)


def pretrain(images: Sequence[Union[str, Path]], config: NetworkConfig, pixdim_mm: float,
             checkpoint_path: Union[str, Path], encoder_path: Union[str, Path],
             settings: PretrainSettings = PretrainSettings(), device: Union[str, torch.device] = "cpu",
             start: Optional[MuscleModel] = None) -> Dict[str, Any]:
    """Pretrain on `images` (CT files, labelled or not), continuing from `checkpoint_path` if it
    exists, else from `start`'s weights if given, else from random ones; writes the checkpoint
    every `checkpoint_every_steps` and at the end, and the encoder file for the segmentation
    network with it (with `start`'s output layers). Returns a summary of the run."""
    if not images:
        raise ValueError("pretraining needs at least one image")
    if start is not None and (start.config != config or start.pixdim_mm != pixdim_mm):
        raise ValueError(f"start model is {start.config.to_dict()} at {start.pixdim_mm} mm, not "
                         f"{config.to_dict()} at {pixdim_mm} mm")
    start_state = {k: v.detach().cpu().clone() for k, v in start.network.state_dict().items()} if start else None
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    model = SelfSupervisedNet(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    progress = None if settings.restart else resume(checkpoint_path, model, optimizer, config, pixdim_mm)
    resumed_from = progress.step if progress else None
    started_from = start_from_segmentation(model, start_state) if start_state and progress is None else []
    progress = progress or Progress()

    total_steps = settings.max_epochs * math.ceil(len(images) / settings.volumes_per_batch)
    loader = training_samples(images, config, pixdim_mm, settings, progress.step) if progress.step < total_steps else []
    contrastive = ContrastiveLoss(temperature=settings.temperature)
    logger.info(f"Pretraining on {len(images)} volumes: step {progress.step} of {total_steps}"
                + (f" (resumed from {checkpoint_path})" if resumed_from is not None else ""))

    began, transfer, interval = time.perf_counter(), None, []
    model.train()
    while progress.step < total_steps:
        for batch in loader:
            if progress.step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress.step, total_steps, settings.lr)
            losses = ssl_losses(model, {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)},
                                contrastive, settings.contrastive_weight)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
            progress.step += 1
            interval.append({name: float(value.detach()) for name, value in losses.items()})
            if progress.step % settings.checkpoint_every_steps == 0 or progress.step == total_steps:
                progress.history.append({"step": progress.step, **{name: sum(i[name] for i in interval) / len(interval)
                                                                     for name in interval[0]}})
                interval = []
                save_checkpoint(checkpoint_path, model, optimizer, progress, config, pixdim_mm, total_steps)
                transfer = write_encoder(encoder_path, model, config, pixdim_mm, progress, start_state)
                logger.info(f"step {progress.step}/{total_steps}: {progress.history[-1]}")
    if transfer is None:  # nothing left to do: still hand over the encoder of the finished run
        transfer = write_encoder(encoder_path, model, config, pixdim_mm, progress, start_state)
    logger.info(f"Encoder {encoder_path}: {transfer['tensors_kept']} tensors kept, skipped: {transfer['skipped']}")
    return {"step": progress.step, "total_steps": total_steps, "resumed_from": resumed_from,
            "tensors_from_start_model": len(started_from),
            "history": progress.history, "encoder_path": str(encoder_path), "checkpoint_path": str(checkpoint_path),
            "seconds": round(time.perf_counter() - began, 1), **transfer}
