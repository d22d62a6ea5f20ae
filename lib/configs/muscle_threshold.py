"""Model ``muscle_threshold``: the classical baseline, usable before any training."""

from typing import Any, Dict, Optional

from lib.infers.muscle_threshold import MuscleThresholdInfer
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask


class MuscleThreshold(TaskConfig):
    """Rule-based skeletal-muscle segmenter; gives annotators a first mask to correct."""

    def init(self, name: str, model_dir: str, conf: Dict[str, str], planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.labels = {"skeletal_muscle": 1}

    def infer(self) -> InferTask:
        return MuscleThresholdInfer(
            labels=self.labels,
            description="Cold-start baseline, no learning: skeletal muscle (-29..150 HU) "
            "in the abdominal wall, beside and behind the vertebra",
        )

    def trainer(self) -> Optional[TrainTask]:
        return None  # rule-based: nothing to train
