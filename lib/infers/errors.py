"""Bad input becomes a 422 with the reason instead of MONAI Label's bare 500."""

from typing import Any, Callable, Dict

from fastapi import HTTPException

from sarcopenia_app.analysis import InvalidRequestError
from sarcopenia_app.ct_input import InvalidCTError


def reporting_invalid_input(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an infer task's __call__ so that a bad image or a bad request option reaches the
    client as HTTP 422 with the reason."""

    def wrapper(self, request: Dict[str, Any], *args, **kwargs):
        try:
            return call(self, request, *args, **kwargs)
        except (InvalidCTError, InvalidRequestError) as error:
            raise HTTPException(status_code=422, detail=str(error)) from error

    return wrapper
