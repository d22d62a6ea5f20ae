"""The DICOMweb proxy that OHIF reads the PACS through (``/proxy/dicom/...``), forwarding
what the browser asked for.

MONAI Label 0.8.5's proxy drops the query string, so a QIDO search for one study lists
every study, and replaces the browser's Accept header, so ``transfer-syntax=*`` becomes
``*/*`` and the PACS transcodes. Debian's Orthanc 1.10 + GDCM plugin can crash
transcoding JPEG 2000. This proxy forwards the query string and the content-negotiation
headers and passes the PACS's answer on byte for byte (still compressed if it was).
"""

from typing import Callable, Dict, Optional, Tuple

import requests
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from starlette.concurrency import run_in_threadpool

FORWARDED_REQUEST_HEADERS = ("accept", "accept-encoding", "content-type")
# The body is passed on as received; the server sets its own framing headers.
DROPPED_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}
UPSTREAM_TIMEOUT_S = 300


def upstream_path(op: str, path: str) -> str:
    """MONAI Label's mapping of /proxy/dicom/{wado,qido,stow}/path onto the PACS's prefixes."""
    prefixes = {
        "wado": settings.MONAI_LABEL_WADO_PREFIX,
        "qido": settings.MONAI_LABEL_QIDO_PREFIX,
        "stow": settings.MONAI_LABEL_STOW_PREFIX,
    }
    prefix = prefixes.get(op, "")
    if op == "qido" and path.endswith("metadata"):  # some OHIF versions ask QIDO for metadata
        prefix = settings.MONAI_LABEL_WADO_PREFIX
    return f"{prefix}/{path}" if prefix else path


def _auth() -> Optional[Tuple[str, str]]:
    user, password = settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
    return (user, password) if user and password else None


def forward(method: str, url: str, headers: Dict[str, str], body: Optional[bytes]) -> Response:
    answer = requests.request(method, url, headers=headers, data=body, auth=_auth(), stream=True,
                              timeout=UPSTREAM_TIMEOUT_S)
    try:
        content = answer.raw.read(decode_content=False)  # keep any Content-Encoding as sent
    finally:
        answer.close()
    kept = {k: v for k, v in answer.headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS}
    return Response(content=content, status_code=answer.status_code, headers=kept)


def router(on_stored: Callable[[], None]) -> APIRouter:
    """Routes for /proxy/dicom; ``on_stored`` runs after the PACS accepted a STOW (an OHIF
    SEG export), so the datastore re-reads its list of labels."""
    routes = APIRouter(prefix="/proxy", include_in_schema=False)

    async def proxy_dicom(request: Request, op: str, path: str) -> Response:
        url = f"{settings.MONAI_LABEL_STUDIES.rstrip('/')}/{upstream_path(op, path)}"
        if request.url.query:
            url = f"{url}?{request.url.query}"
        headers = {"accept-encoding": "identity"}  # not requests' default gzip, unless the client asked
        headers.update({k.lower(): v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS})
        body = await request.body() if request.method == "POST" else None
        response = await run_in_threadpool(forward, request.method, url, headers, body)
        if request.method == "POST" and response.status_code < 300:
            on_stored()
        return response

    user_role = RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)

    def endpoint_for(op: str):
        async def endpoint(request: Request, path: str, user: User = Depends(user_role)) -> Response:
            return await proxy_dicom(request, op, path)

        return endpoint

    for op in ("wado", "qido", "stow", ""):  # the catch-all last: routes match in order
        route = f"/dicom/{op}/{{path:path}}" if op else "/dicom/{path:path}"
        routes.add_api_route(route, endpoint_for(op), methods=["GET", "POST"])
    return routes
