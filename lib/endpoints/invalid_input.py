"""One answer for a series that is not a usable CT volume, on every route that reads one."""

from contextlib import contextmanager
from typing import Iterator

from fastapi import HTTPException

from sarcopenia_app.ct_input import InvalidCTError


@contextmanager
def invalid_ct_as_422() -> Iterator[None]:
    """InvalidCTError (raised by the datastore or an infer task) -> HTTP 422 with the reason,
    instead of MONAI Label's bare 500."""
    try:
        yield
    except InvalidCTError as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
