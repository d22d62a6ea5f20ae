"""Bad input becomes a 422 with the reason instead of MONAI Label's bare 500."""

from typing import Any, Callable, Dict

import numpy as np
from fastapi import HTTPException
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import LoadImaged, MapTransform

from sarcopenia_app.analysis import InvalidRequestError
from sarcopenia_app.ct_input import InvalidCTError, check_ct_array
from sarcopenia_app.ct_loader import check_before_reading


class LoadCTd(MapTransform):
    """LoadImaged that says "this is not a readable CT" instead of a reader's stack trace,
    and checks the volume before any model sees it."""

    def __init__(self, key: str = "image"):
        super().__init__(key)
        self.load = LoadImaged(keys=key)

    def __call__(self, data):
        for key in self.key_iterator(data):
            if isinstance(data[key], str):
                check_before_reading(data[key])
        try:
            d = self.load(data)
        except Exception as error:  # any reader failure means the same to the user
            raise InvalidCTError(f"could not read the image as a CT volume (NIfTI, NRRD or DICOM series): "
                                 f"{type(error).__name__}: {str(error)[:200]}") from error
        for key in self.key_iterator(d):
            image: MetaTensor = d[key]
            spacing = affine_to_spacing(image.affine, r=3).tolist() if image.ndim == 3 else [1.0, 1.0, 1.0]
            check_ct_array(np.asarray(image), spacing)
        return d


def reporting_invalid_input(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an infer task's __call__ so that a bad image or a bad request option reaches the
    client as HTTP 422 with the reason."""

    def wrapper(self, request: Dict[str, Any], *args, **kwargs):
        try:
            return call(self, request, *args, **kwargs)
        except (InvalidCTError, InvalidRequestError) as error:
            raise HTTPException(status_code=422, detail=str(error)) from error

    return wrapper
