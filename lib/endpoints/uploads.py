"""``PUT /datastore/image`` and ``PUT /datastore/label`` as MONAI Label serves them, after checks
upstream 0.8.5 does not make, so that a bad upload changes nothing in the datastore:

- an image must be a CT volume (sarcopenia_app.ct_loader), else 422 with the reason;
- a label must be on its image's grid and hold only values some model knows, else 422;
- ids, tags and file names must be plain names (no path traversal), else 422;
- a full disk answers 507 and leaves the previous files as they were.
"""

import os
import pathlib
import shutil
import tempfile
from contextlib import contextmanager
from typing import Callable, Collection, Iterator, Optional

import numpy as np
from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, HTTPException, UploadFile
from monai.transforms import LoadImage
from monailabel.config import settings
from monailabel.endpoints.datastore import add_image, save_label
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.utils.app import app_instance

from lib.endpoints.invalid_input import invalid_ct_as_422
from sarcopenia_app.ct_loader import header_shape, load_ct
from sarcopenia_app.label_check import InvalidLabelError, check_label_array
from sarcopenia_app.safe_files import NO_SPACE_ERRNOS
from sarcopenia_app.safe_names import UnsafeNameError, check_safe_name, check_upload_file_name

READABLE_LABELS = (".nii", ".nii.gz", ".nrrd", ".mha")  # other formats (e.g. DICOM SEG) go through unchecked


@contextmanager
def upload_as_file(upload: UploadFile) -> Iterator[str]:
    """The upload in a temporary file named like it (readers pick the format by suffix)."""
    suffix = "".join(pathlib.Path(upload.filename or "upload.nii.gz").suffixes)
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(upload.file, f)
        upload.file.seek(0)  # upstream copies it again
        yield path
    finally:
        os.remove(path)


@contextmanager
def refusing_bad_uploads() -> Iterator[None]:
    """Every reason to refuse an upload -> 4xx/507 with a message the user can act on."""
    try:
        with invalid_ct_as_422():
            yield
    except (InvalidLabelError, UnsafeNameError) as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS:
            raise HTTPException(status_code=507, detail=f"the server's disk is full: nothing was saved "
                                                        f"({error.strerror}); ask an admin to free space") from error
        raise


def _image_shape(image_id: str) -> Optional[tuple]:
    uri = app_instance().datastore().get_image_uri(image_id)
    if not uri or not os.path.isfile(uri):
        raise HTTPException(status_code=404, detail=f"image {image_id!r} is not in the datastore: upload it first")
    shape = header_shape(uri)
    return shape if shape is not None else tuple(LoadImage(image_only=True)(uri).shape)


def check_label_upload(path: str, image_id: str, allowed_values: Collection[int]) -> None:
    if not path.lower().endswith(READABLE_LABELS):
        return
    try:
        label = np.asarray(LoadImage(image_only=True)(path))
    except Exception as error:  # noqa: BLE001 - any reader failure means the same to the user
        raise InvalidLabelError(f"could not read the label (NIfTI/NRRD): {type(error).__name__}: "
                                f"{str(error)[:200]}") from error
    check_label_array(label, _image_shape(image_id), allowed_values)


def router(label_values: Callable[[], Collection[int]]) -> APIRouter:
    """``label_values()``: the label values the served models know (besides 0)."""
    routes = APIRouter(include_in_schema=False)

    @routes.put("/datastore/image")
    async def put_image(background_tasks: BackgroundTasks, image: Optional[str] = None, params: str = Form("{}"),
                        file: UploadFile = File(...),
                        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
        with refusing_bad_uploads():
            check_safe_name(image if image else check_upload_file_name(file.filename or ""), "image id")
            check_upload_file_name(file.filename or "upload.nii.gz")
            with upload_as_file(file) as path:
                load_ct(path)
            return add_image(background_tasks, image, params, file, user.username)

    @routes.put("/datastore/label")
    async def put_label(background_tasks: BackgroundTasks, image: str, params: str = Form("{}"),
                        tag: str = DefaultLabelTag.FINAL.value, label: UploadFile = File(...),
                        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
        with refusing_bad_uploads():
            check_safe_name(image, "image id")
            check_safe_name(tag or DefaultLabelTag.FINAL.value, "label tag")
            check_upload_file_name(label.filename or "label.nii.gz")
            with upload_as_file(label) as path:
                check_label_upload(path, image, label_values())
            return save_label(background_tasks, image, params, tag, label, user.username)

    return routes
