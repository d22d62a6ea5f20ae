"""MONAI Label train task for the muscle network: fine-tuning from the datastore's final labels.

Partial labels: only slices that hold an annotation are ever sampled or scored; the others are
unknown, not background. The best model is published atomically with what is needed to rebuild
it, so a running server never loads a half-written file, and only if its validation Dice is not
below the published model's on the same validation images; a run whose loss turns NaN stops
and publishes nothing. `multi_gpu` works on CPU machines too
(gloo, one process per entry of `gpus`), so the same code scales out on a GPU server.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from typing import Any, Dict, Optional

import torch
from ignite.engine import Events
from ignite.handlers import TerminateOnNan
from monai.handlers import LrScheduleHandler, from_engine
from monai.inferers import SliceInferer
from monai.losses import DiceCELoss
from monai.networks.utils import copy_model_state
from monai.transforms import Activationsd, AsDiscreted, EnsureTyped, RandWeightedCropd, SpatialPadd, SqueezeDimd
from monailabel.tasks.train.basic_train import BasicTrainTask, Context

from sarcopenia_app.network import NetworkConfig, build_network
from sarcopenia_app.publish import all_finite, publish_atomically, publish_decision
from sarcopenia_app.transforms import (
    AnnotatedSliceWeightd,
    CropToAnnotatedSlabd,
    MaskUnannotatedSlicesd,
    NeighbourSlicesd,
    augmentations,
    load_image_and_label,
)

logger = logging.getLogger(__name__)


class MuscleSegTrain(BasicTrainTask):
    def __init__(self, model_dir: str, publish_path: str, network_config: NetworkConfig, pixdim_mm: float,
                 description: str, config: Dict[str, Any], encoder_path: str = ""):
        self.network_config = network_config
        self.encoder_path = encoder_path
        self.pixdim_mm = pixdim_mm
        self.model_publish_path = publish_path
        # init: "current" = the published model (fine-tuning), "encoder" = a self-supervised
        # encoder (transfer learning), "scratch" = random weights
        defaults = {"init": ["current", "encoder", "scratch"], "max_epochs": 20, "lr": 3e-4, "crop_px": 224, "samples_per_volume": 8,
                    "foreground_weight": 3.0, "val_split": 0.2, "train_batch_size": 1, "val_batch_size": 1,
                    "multi_gpu": False, "dataset": "CacheDataset", "dataloader": "DataLoader",
                    "tracking": ["None", "mlflow"]}  # MLflow >= 3.13 refuses the default file store
        defaults.update(config)
        # BasicTrainTask's own publisher copies checkpoints non-atomically: it gets no publish path
        super().__init__(model_dir, description, config=defaults, amp=torch.cuda.is_available(),
                         load_path=publish_path, publish_path=None, labels={"skeletal_muscle": 1},
                         disable_meta_tracking=False)

    # ---- what is trained ---------------------------------------------------------------------
    def network(self, context: Context):
        network = build_network(self.network_config)
        if self._init(context) == "encoder":
            path = context.request.get("encoder_path") or self.encoder_path
            if not path or not os.path.exists(path):
                raise FileNotFoundError(f"init=encoder needs a pretrained encoder file; none at {path!r}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            _, loaded, skipped = copy_model_state(network, state.get("model", state))
            logger.info(f"Encoder {path}: {len(loaded)} tensors loaded, skipped: {skipped}")
        return network

    @staticmethod
    def _init(context: Context) -> str:
        init = context.request.get("init", "current")
        return init[0] if isinstance(init, list) else init

    def _load_checkpoint(self, context: Context, train_handlers):
        if self._init(context) == "current":
            super()._load_checkpoint(context, train_handlers)

    def optimizer(self, context: Context):
        return torch.optim.AdamW(context.network.parameters(), lr=float(context.request.get("lr", 3e-4)),
                                 weight_decay=1e-4)

    def lr_scheduler_handler(self, context: Context):
        """Cosine decay to the end of the run: the last epochs polish boundaries, which is what SMA needs."""
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(context.optimizer, T_max=max(context.max_epochs, 1),
                                                              eta_min=1e-5)
        return LrScheduleHandler(schedule, print_lr=True)

    def loss_function(self, context: Context):
        return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)

    # ---- data ------------------------------------------------------------------------------
    def train_pre_transforms(self, context: Context):
        crop = self.network_config.fitting_crop_px(int(context.request.get("crop_px", 224)))
        return [
            *load_image_and_label(self.pixdim_mm),
            NeighbourSlicesd("image", self.network_config.neighbour_slices),
            AnnotatedSliceWeightd("label", "weight", float(context.request.get("foreground_weight", 3.0))),
            SpatialPadd(("image", "label", "weight"), spatial_size=(crop, crop, -1)),  # slim patients
            RandWeightedCropd(("image", "label"), w_key="weight", spatial_size=(crop, crop, 1),
                              num_samples=int(context.request.get("samples_per_volume", 8))),
            SqueezeDimd(("image", "label"), dim=-1),
            *augmentations(),
            EnsureTyped(("image", "label"), track_meta=False),
        ]

    def train_post_transforms(self, context: Context):
        return [
            EnsureTyped("pred"),
            Activationsd("pred", softmax=True),
            AsDiscreted(("pred", "label"), argmax=(True, False), to_onehot=2),
        ]

    def val_pre_transforms(self, context: Context):
        return [
            *load_image_and_label(self.pixdim_mm),
            CropToAnnotatedSlabd(("image", "label"), "label", margin=self.network_config.neighbour_slices),
            NeighbourSlicesd("image", self.network_config.neighbour_slices),
        ]

    def val_post_transforms(self, context: Context):
        return [
            *self.train_post_transforms(context),
            MaskUnannotatedSlicesd(("pred", "label"), "label"),
        ]

    def val_inferer(self, context: Context):
        return SliceInferer(roi_size=(256, 256), sw_batch_size=4, spatial_dim=2, overlap=0.25)

    # ---- publishing --------------------------------------------------------------------------
    def finalize(self, context: Context):
        super().finalize(context)
        context.trainer.add_event_handler(Events.ITERATION_COMPLETED,
                                          TerminateOnNan(output_transform=from_engine(["loss"], first=True)))
        baseline: Dict[str, Any] = {"dice": None}
        if context.evaluator is not None:  # on every rank: a distributed evaluator needs them all
            context.trainer.add_event_handler(Events.STARTED, lambda _: baseline.update(
                dice=self._published_dice(context)))
        if context.local_rank != 0:
            return
        engine = context.evaluator or context.trainer

        def publish_if_best(current) -> None:
            # epoch 0 is the published model's own baseline evaluation, not a candidate: publishing
            # there rewrote the published file (tests/test_publish_guard.py caught it)
            if context.trainer.state.epoch < 1 or current.state.best_metric_epoch != context.trainer.state.epoch:
                return
            network = context.network.module if hasattr(context.network, "module") else context.network
            weights = network.state_dict()
            publish, why = publish_decision(float(current.state.best_metric), baseline["dice"], all_finite(weights))
            logger.info(f"Epoch {context.trainer.state.epoch}: {why}")
            if not publish:
                return
            state = {"model": weights, "network_config": self.network_config.to_dict(),
                     "pixdim_mm": self.pixdim_mm, "val_dice": float(current.state.best_metric),
                     "epoch": int(context.trainer.state.epoch)}
            publish_atomically(state, self.model_publish_path)
            logger.info(f"Published {self.model_publish_path} (epoch {state['epoch']}, dice {state['val_dice']:.4f})")

        engine.add_event_handler(Events.EPOCH_COMPLETED, publish_if_best)

    def _published_dice(self, context: Context) -> Optional[float]:
        """The published model's Dice on this run's validation images: the bar a new model must reach.
        Runs the run's own evaluator with the published weights, then puts the run's weights back."""
        if not os.path.exists(self.model_publish_path):
            return None
        network = context.network.module if hasattr(context.network, "module") else context.network
        own = {k: v.detach().clone() for k, v in network.state_dict().items()}
        published = torch.load(self.model_publish_path, map_location="cpu", weights_only=True)
        try:
            network.load_state_dict(published["model"])
        except (KeyError, RuntimeError) as error:  # another architecture: it cannot be compared
            logger.warning(f"published model not comparable ({error}); a new model is published on its own merit")
            return None
        evaluator = context.evaluator
        evaluator.run(global_epoch=0)
        dice = float(evaluator.state.metrics[evaluator.state.key_metric_name])
        evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1.0, -1
        network.load_state_dict(own)
        logger.info(f"Published model's validation dice on this run's images: {dice:.4f}")
        return dice

    # ---- distributed training ----------------------------------------------------------------
    def train(self, rank, world_size, request, datalist):
        """One process's run. MONAI Label destroys the process group at the end of a run but leaves
        the DDP network (which keeps the group and its gloo threads alive) in reference cycles of
        the engines; collected only at interpreter exit, it was torn down while Python was half
        gone, and a rank of a finished training died with SIGABRT ("terminate called without an
        active exception"). Free it while the interpreter is whole. A failed rank's exception goes
        to the parent as it is (torch's spawn stops the other ranks and raises it there); its group
        is not destroyed here, as that could wait forever on peers stuck in a collective."""
        try:
            return super().train(rank, world_size, request, datalist)
        finally:
            if request.get("multi_gpu"):
                gc.collect()

    def __call__(self, request, datastore):
        if request.get("multi_gpu") and not torch.cuda.is_available():
            rendezvous = tempfile.NamedTemporaryFile(prefix="muscle_seg_ddp_", delete=False).name
            os.remove(rendezvous)
            request = {**request, "distributed_backend": "gloo", "distributed_url": f"file://{rendezvous}",
                       "gpus": request.get("gpus") or "0,1"}
        return super().__call__(request, datastore)

    def _device(self, context: Context):
        if torch.cuda.is_available():
            return super()._device(context)
        return torch.device("cpu")

    def _create_network_and_optimizer(self, context: Context):
        if torch.cuda.is_available() or not context.multi_gpu:
            return super()._create_network_and_optimizer(context)
        network = self.network(context).to(context.device)
        context.network = network
        optimizer = self.optimizer(context)
        return torch.nn.parallel.DistributedDataParallel(network), optimizer
