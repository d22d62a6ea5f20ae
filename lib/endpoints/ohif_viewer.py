"""OHIF at ``/ohif/``: the OHIF v3 build that MONAI Label 0.8.5 ships, with this app's
``app-config.js`` (lib/ohif/app-config.js: OHIF's segmentation panel, with its brush, eraser
and "Export DICOM SEG", beside the MONAI Label panel).

Upstream's route joins sub-folders with ``os.pathsep`` (``assets/x`` becomes ``assets:x``), so
every file below the top folder is answered with index.html; here a path inside the build is
served as the file, anything else (OHIF's own routes such as ``monai-label``) as index.html.
"""

from pathlib import Path

import monailabel.endpoints
from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.utils.others.generic import get_mime_type

OHIF_BUILD = Path(monailabel.endpoints.__file__).resolve().parent / "static" / "ohif"
APP_CONFIG = Path(__file__).resolve().parents[1] / "ohif" / "app-config.js"


def ohif_file(path: str) -> Path:
    """The file of the build for ``path``; OHIF's page for a route or an unknown path."""
    if path == APP_CONFIG.name:
        return APP_CONFIG
    candidate = (OHIF_BUILD / path).resolve()
    if candidate.is_file() and candidate.is_relative_to(OHIF_BUILD):
        return candidate
    return OHIF_BUILD / "index.html"


def router() -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get("/ohif/{path:path}")
    async def ohif(path: str, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> FileResponse:
        file = ohif_file(path)
        return FileResponse(file, media_type=get_mime_type(str(file)))

    return routes
