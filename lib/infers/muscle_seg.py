"""Serves the muscle network as a MONAI Label infer task; the work is sarcopenia_app's.

Every inference also finds L3 and measures it: the response's ``params`` carry the
measurements (``measurements``), and the label covers the L3 vertebra's slices (the whole volume
with ``"region": "all"``); a scan without L3 is answered with 422 and the reason unless
``"region": "all"`` asks for the mask anyway. Request keys: ``sex``, ``height_m``,
``weight_kg``, ``cutoffs``, ``convention``, ``slab_mm``, ``region``, ``muscle_hu`` ([low, high]),
``levels`` (``"all"``: every level T12..L5 in view and the L1-L5 muscle volume).
The CT is read as `sarcopenia measure` reads it (`ct_loader.load_ct`): sex, height and weight
recorded in a DICOM header are used when the request does not give them.
"""

import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from monai.data import MetaTensor
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.infers.errors import reporting_invalid_input

from sarcopenia_app.analysis import MeasureOptions, Models, analyse_ct, load_models, subject_for
from sarcopenia_app.ct_input import InvalidCTError
from sarcopenia_app.ct_loader import LoadedCT
from sarcopenia_app.transforms import LoadCTd

REQUEST_OPTIONS = ("cutoffs", "convention", "slab_mm", "region", "muscle_hu", "levels")
LOADED_KEY = "loaded_ct"  # the LoadedCT beside the image: DICOM header facts and slice UIDs


class MuscleSegInfer(BasicInferTask):
    """Reloads the published model files whenever training replaces them (by modification time)."""

    def __init__(self, model_path: str, locator_path: str, labels: Dict[str, int], description: str):
        super().__init__(path=None, network=None, type=InferType.SEGMENTATION, labels=labels, dimension=3,
                         description=description)
        self.model_path, self.locator_path = model_path, locator_path
        self._loaded: Optional[Models] = None
        self._loaded_key: Optional[Tuple] = None

    __call__ = reporting_invalid_input(BasicInferTask.__call__)

    def is_valid(self) -> bool:
        return os.path.exists(self.model_path) and os.path.exists(self.locator_path)

    def models(self, device: str) -> Models:
        key = (os.path.getmtime(self.model_path), os.path.getmtime(self.locator_path), str(device))
        if self._loaded is None or self._loaded_key != key:
            self._loaded = load_models(self.model_path, self.locator_path, device)
            self._loaded_key = key
        return self._loaded

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return [LoadCTd(self.input_key, loaded_key=LOADED_KEY)]

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return []

    def run_inferer(self, data: Dict[str, Any], convert_to_batch: bool = True, device: str = "cpu") -> Dict[str, Any]:
        device = device if torch.cuda.is_available() else "cpu"
        image: MetaTensor = data[self.input_key]
        models = self.models(device)
        options = MeasureOptions(**{k: tuple(data[k]) if k == "muscle_hu" else data[k]
                                    for k in REQUEST_OPTIONS if data.get(k) is not None})
        loaded: LoadedCT = data[LOADED_KEY]
        subject = subject_for(loaded.header, data.get("sex"), _number(data.get("height_m")), _number(data.get("weight_kg")))
        result = analyse_ct(loaded, models, subject, options, device, os.path.basename(str(data.get("image_path", ""))))
        if result.mask is None:  # no L3 and no whole-volume request: nothing to measure or show
            raise InvalidCTError(f"{result.location.reason}: no L3 measurement is possible on this scan; "
                                 'send {"region": "all"} for a whole-volume muscle mask')
        data[self.output_label_key] = MetaTensor(torch.from_numpy(result.mask), affine=image.affine)
        data[self.output_json_key] = {"measurements": result.record}
        return data


def _number(value: Any) -> Optional[float]:
    return None if value in (None, "") else float(value)
