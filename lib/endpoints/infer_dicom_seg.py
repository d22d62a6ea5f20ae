"""``POST /infer/<model>`` as MONAI Label serves it, plus two things a PACS set-up needs.

- ``output=dicom_seg`` without ``label_info``: upstream answers 404 ("parameters cannot be
  empty") and with ``label_info`` but no names the segment is called ``unknown``. Here
  the segments are named after the model's labels, and the SEG is marked as a proposal.
- An empty result asked for as DICOM SEG: upstream fails while sending (500); here 422.
- A PACS series that is not one readable CT volume (mixed sizes, broken pixel data)
  fails while the datastore converts it, before any infer task runs: answer 422 with the
  reason, as the infer tasks do for bad uploads, instead of a bare 500.
"""

import json
import os
from functools import partial
from typing import Callable, Dict, Mapping, Optional

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse
from monailabel.config import settings
from monailabel.endpoints.infer import ResultType, run_inference
from monailabel.endpoints.user.auth import RBAC, User

from lib.datastore import segments
from lib.endpoints.infer_limit import InferLimit
from lib.endpoints.invalid_input import invalid_ct_as_422


def with_segment_names(params: str, model: str, label_names: Mapping[str, int]) -> str:
    """The request's params with a ``label_info`` naming each segment, unless the client sent one."""
    values = json.loads(params) if params else {}
    if not values.get("label_info"):
        values["label_info"] = segments.segment_list(label_names, segments.series_description(model, final=False))
    return json.dumps(values)


def router(labels_of: Callable[[str], Optional[Dict[str, int]]], limit: InferLimit) -> APIRouter:
    """``labels_of(model)``: the model's label names -> values, None for an unknown model;
    ``limit``: how many inferences run at once (in worker threads, see infer_limit)."""
    routes = APIRouter(include_in_schema=False)

    @routes.post("/infer/{model}")
    async def infer(
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        session_id: str = "",
        params: str = Form("{}"),
        file: UploadFile = File(None),
        label: UploadFile = File(None),
        output: Optional[ResultType] = None,
        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
    ):
        labels = labels_of(model)
        if output == ResultType.dicom_seg and labels:
            params = with_segment_names(params, model, labels)
        with invalid_ct_as_422():
            response = await limit.run(partial(run_inference, background_tasks, model, image, session_id, params,
                                               file, label, output))
        if isinstance(response, FileResponse) and not os.path.isfile(response.path):
            # the SEG writer returns "" for an empty mask; upstream then fails while sending
            raise HTTPException(status_code=422, detail=f"{model} found no {', '.join(labels or {})} "
                                                        "in this image: there is no segment to write as DICOM SEG")
        return response

    return routes
