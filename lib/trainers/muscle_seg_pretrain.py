"""MONAI Label train task for self-supervised pretraining of the muscle network on every image of
the datastore, labelled or not (the work itself is `sarcopenia_app.pretrain`).

Guarded: MONAI Label's `POST /train/` (OHIF's "update model" button) starts every trainer of the
app, one after another, with the same request keys. A pretraining run over thousands of scans
must not start that way, so this task runs only when the request carries
``"confirm": "<this task's name>"``; any other request is answered with a skip, in seconds,
without touching the checkpoint or the encoder file. The key is not among the task's config
defaults, so a client that sends back the defaults it read from /info/ (OHIF does) cannot confirm
it by accident.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from sarcopenia_app.network import NetworkConfig
from sarcopenia_app.pretrain import PretrainSettings, pretrain

logger = logging.getLogger(__name__)

CONFIRM_KEY = "confirm"


class MuscleSegPretrain(TrainTask):
    def __init__(self, name: str, checkpoint_path: str, encoder_path: str, network_config: NetworkConfig,
                 pixdim_mm: float, description: str):
        super().__init__(description)
        self.name = name
        self.checkpoint_path, self.encoder_path = checkpoint_path, encoder_path
        self.network_config, self.pixdim_mm = network_config, pixdim_mm

    def config(self) -> Dict[str, Any]:
        defaults = PretrainSettings()
        return {"max_epochs": defaults.max_epochs, "lr": defaults.lr, "crop_px": defaults.crop_px,
                "samples_per_volume": defaults.samples_per_volume, "volumes_per_batch": defaults.volumes_per_batch,
                "contrastive_weight": defaults.contrastive_weight, "checkpoint_every_steps": defaults.checkpoint_every_steps,
                "restart": defaults.restart}

    def confirmed(self, request: Dict[str, Any]) -> bool:
        return request.get(CONFIRM_KEY) == self.name

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        if not self.confirmed(request):
            reason = (f"{self.name} skipped: self-supervised pretraining runs only when asked for by name, "
                      f'with {{"{CONFIRM_KEY}": "{self.name}"}} in the request to POST /train/{self.name}')
            logger.info(reason)
            return {"skipped": reason}
        images = [datastore.get_image_uri(image_id) for image_id in datastore.list_images()]
        device = "cuda" if torch.cuda.is_available() and request.get("device", "cuda") != "cpu" else "cpu"
        return pretrain(images, self.network_config, self.pixdim_mm, self.checkpoint_path, self.encoder_path,
                        PretrainSettings.from_request(request), device=device)

    def stats(self) -> Dict[str, Any]:
        """What /info/ shows: the checkpoint's progress (also after a restart of the server)."""
        if not Path(self.checkpoint_path).exists():
            return {}
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        return {"step": state["step"], "total_steps": state["total_steps"],
                "last_losses": state["history"][-1] if state["history"] else None}
