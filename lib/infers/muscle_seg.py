"""Serves the muscle network as a MONAI Label infer task; the work is sarcopenia_app.segment's."""

import os
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirstd
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.infers.errors import LoadCTd, reporting_invalid_input

from sarcopenia_app.segment import MuscleModel, load_model, predict_mask


class MuscleSegInfer(BasicInferTask):
    """Reloads the published model file whenever training replaces it (by modification time)."""

    def __init__(self, model_path: str, labels: Dict[str, int], description: str):
        super().__init__(path=None, network=None, type=InferType.SEGMENTATION, labels=labels, dimension=3,
                         description=description)
        self.model_path = model_path
        self._loaded: Optional[MuscleModel] = None
        self._loaded_key = None

    __call__ = reporting_invalid_input(BasicInferTask.__call__)

    def is_valid(self) -> bool:
        return os.path.exists(self.model_path)

    def model(self, device: str) -> MuscleModel:
        key = (os.path.getmtime(self.model_path), str(device))
        if self._loaded is None or self._loaded_key != key:
            self._loaded, self._loaded_key = load_model(self.model_path, device), key
        return self._loaded

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return [LoadCTd("image"), EnsureChannelFirstd(keys="image")]

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return []

    def run_inferer(self, data: Dict[str, Any], convert_to_batch: bool = True, device: str = "cpu") -> Dict[str, Any]:
        device = device if torch.cuda.is_available() else "cpu"
        image: MetaTensor = data[self.input_key]
        mask = predict_mask(self.model(device), image, device)
        data[self.output_label_key] = MetaTensor(torch.from_numpy(mask), affine=image.affine)
        return data
