"""Serves the classical (cold-start) skeletal-muscle baseline as a MONAI Label infer task."""

from typing import Any, Callable, Dict, Sequence

import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.infers.errors import reporting_invalid_input

from sarcopenia_app.baseline import segment_muscle_volume
from sarcopenia_app.transforms import LoadCTd


class MuscleThresholdInfer(BasicInferTask):
    """Thresholds and anatomy rules instead of a network: there is no model file to load.

    The mask is computed on the image's own voxel grid and written with its affine, so
    no resampling or reorientation is needed on either side.
    """

    def __init__(self, labels: Dict[str, int], description: str):
        super().__init__(
            path=None,
            network=None,
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=3,
            description=description,
        )

    __call__ = reporting_invalid_input(BasicInferTask.__call__)

    def is_valid(self) -> bool:
        return True  # nothing to load: always available

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return [LoadCTd(self.input_key)]

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return []

    def run_inferer(self, data: Dict[str, Any], convert_to_batch: bool = True, device: str = "cpu") -> Dict[str, Any]:
        image: MetaTensor = data[self.input_key]
        spacing_mm = affine_to_spacing(image.affine, r=3).tolist()
        mask = segment_muscle_volume(image.array[0], spacing_mm)
        data[self.output_label_key] = MetaTensor(torch.from_numpy(mask), affine=image.affine)
        return data
