"""Routes this app serves in place of MONAI Label 0.8.5's own (see each module for why).

MONAI Label builds its FastAPI app before it loads ours, and Starlette matches routes in
order, so ours go in front of the list; the server keeps every other route as it is.
"""

from typing import Callable, Dict, Optional

from fastapi import APIRouter, FastAPI
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp

from lib.endpoints import datastore_image, dicomweb_proxy, infer_dicom_seg


def install(server: FastAPI, labels_of: Callable[[str], Optional[Dict[str, int]]],
            on_stored: Callable[[], None]) -> None:
    ours = APIRouter()
    ours.include_router(infer_dicom_seg.router(labels_of), prefix=settings.MONAI_LABEL_API_STR)
    ours.include_router(datastore_image.router(), prefix=settings.MONAI_LABEL_API_STR)
    ours.include_router(dicomweb_proxy.router(on_stored), prefix=settings.MONAI_LABEL_API_STR)
    server.router.routes[0:0] = ours.routes


def install_for(app: MONAILabelApp) -> None:
    """Called once the server has built ``app`` (``on_init_complete``)."""
    from monailabel.app import app as server  # importing it builds the server's FastAPI app: only here

    def labels_of(model: str) -> Optional[Dict[str, int]]:
        labels = app.info()["models"].get(model, {}).get("labels")
        return dict(labels) if isinstance(labels, dict) else None

    install(server, labels_of, on_stored=getattr(app.datastore(), "forget_lists", lambda: None))
