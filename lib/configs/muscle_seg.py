"""Model ``muscle_seg``: the 2.5D skeletal-muscle network, served and fine-tuned from the datastore."""

import os
from typing import Any, Dict

from lib.infers.muscle_seg import MuscleSegInfer
from lib.scoring.muscle_uncertainty import MuscleUncertaintyScoring
from lib.strategies.uncertain import MostUncertain
from lib.trainers.muscle_seg import MuscleSegTrain
from lib.trainers.muscle_seg_pretrain import MuscleSegPretrain
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from sarcopenia_app.network import NetworkConfig
from sarcopenia_app.segment import published_network
from sarcopenia_app.transforms import DEFAULT_PIXDIM_MM
from sarcopenia_app.uncertainty import DEFAULT_PASSES

NETWORK = NetworkConfig(channels=(16, 32, 64, 128, 256), res_units=1, dropout=0.1)  # before any model is published


class MuscleSeg(TaskConfig):
    """The published model file is ``model/muscle_seg.pt``; training replaces it atomically."""

    def init(self, name: str, model_dir: str, conf: Dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.labels = {"skeletal_muscle": 1}
        self.model_path = os.path.join(model_dir, f"{name}.pt")
        self.encoder_path = os.path.join(model_dir, f"{name}_encoder.pt")  # written by self-supervised pretraining
        self.locator_path = os.path.join(model_dir, "l3_locator.pt")  # benchmarks/train_l3_locator.py
        self.uncertainty_passes = int(conf.get("uncertainty_passes", DEFAULT_PASSES))  # MC dropout + flip passes
        self.network_config = published_network(self.model_path, NETWORK)  # fine-tuning rebuilds what is published

    def infer(self) -> InferTask:
        return MuscleSegInfer(self.model_path, self.locator_path, self.labels,
                              "2.5D UNet: skeletal muscle (psoas, paraspinals, quadratus lumborum, abdominal wall)")

    def trainer(self) -> Dict[str, TrainTask]:
        """Fine-tuning under the model's name; self-supervised pretraining, which writes the encoder
        file that fine-tuning can start from, under ``<name>_pretrain`` (runs only when confirmed)."""
        pretrain_name = f"{self.name}_pretrain"
        return {
            self.name: MuscleSegTrain(
                os.path.join(self.model_dir, self.name), self.model_path, self.network_config, DEFAULT_PIXDIM_MM,
                "Fine-tune the muscle network on the datastore's final labels (partial labels allowed)",
                config={}, encoder_path=self.encoder_path),
            pretrain_name: MuscleSegPretrain(
                pretrain_name, os.path.join(self.model_dir, pretrain_name, "checkpoint.pt"), self.encoder_path,
                self.network_config, DEFAULT_PIXDIM_MM,
                f'Self-supervised pretraining on every image (labelled or not); needs {{"confirm": "{pretrain_name}"}}'),
        }

    def scoring_method(self) -> Dict[str, ScoringMethod]:
        """Uncertainty around L3 of every unlabelled image, against the published model."""
        return {"muscle_uncertainty": MuscleUncertaintyScoring(self.model_path, self.locator_path,
                                                                 self.uncertainty_passes)}

    def strategy(self) -> Dict[str, Strategy]:
        return {"uncertain": MostUncertain(self.model_path)}
