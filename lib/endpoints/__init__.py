"""Routes this app serves in place of MONAI Label 0.8.5's own (see each module for why), and
what sits in front of every route: path-traversal checks, and access tokens when configured.

MONAI Label builds its FastAPI app before it loads ours, and Starlette matches routes in
order, so ours go in front of the list; the server keeps every other route as it is. Its
middleware stack is built by then too, so ours wraps that stack.

App conf (``--conf key value``): ``access_tokens`` a token file (or env SARCOPENIA_ACCESS_TOKENS) (lib/endpoints/access.py; no
file = no access control, as upstream), ``infer_concurrency`` (default 2) and
``infer_max_waiting`` (default 32) (lib/endpoints/infer_limit.py).
"""

import os
from typing import Callable, Collection, Dict, Mapping, Optional

from fastapi import APIRouter, FastAPI
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp

from lib.endpoints import datastore_image, dicomweb_proxy, infer_dicom_seg, ohif_viewer, signin, uploads
from lib.endpoints.access import TokenAccess, login_router
from lib.endpoints.infer_limit import InferLimit
from lib.endpoints.safe_ids import SafeIds
from sarcopenia_app.access_tokens import TokenStore


def install(server: FastAPI, labels_of: Callable[[str], Optional[Dict[str, int]]],
            on_stored: Callable[[], None], label_values: Callable[[], Collection[int]],
            conf: Mapping[str, str]) -> None:
    limit = InferLimit(int(conf.get("infer_concurrency", 2)), int(conf.get("infer_max_waiting", 32)))
    tokens_file = conf.get("access_tokens") or os.environ.get("SARCOPENIA_ACCESS_TOKENS")
    store = TokenStore(tokens_file) if tokens_file else None
    ours = APIRouter()
    ours.include_router(infer_dicom_seg.router(labels_of, limit), prefix=settings.MONAI_LABEL_API_STR)
    ours.include_router(datastore_image.router(), prefix=settings.MONAI_LABEL_API_STR)
    ours.include_router(uploads.router(label_values), prefix=settings.MONAI_LABEL_API_STR)
    ours.include_router(dicomweb_proxy.router(on_stored), prefix=settings.MONAI_LABEL_API_STR)
    ours.include_router(ohif_viewer.router(), prefix=settings.MONAI_LABEL_API_STR)
    if store is not None:
        ours.include_router(login_router(store), prefix=settings.MONAI_LABEL_API_STR)
        ours.include_router(signin.router(store), prefix=settings.MONAI_LABEL_API_STR)
    server.router.routes[0:0] = ours.routes
    stack = SafeIds(server.middleware_stack or server.build_middleware_stack())
    server.middleware_stack = TokenAccess(stack, store) if store is not None else stack


def install_for(app: MONAILabelApp) -> None:
    """Called once the server has built ``app`` (``on_init_complete``)."""
    from monailabel.app import app as server  # importing it builds the server's FastAPI app: only here

    def labels_of(model: str) -> Optional[Dict[str, int]]:
        labels = app.info()["models"].get(model, {}).get("labels")
        return dict(labels) if isinstance(labels, dict) else None

    def label_values() -> Collection[int]:
        return {int(v) for model in app.info()["models"].values()
                for v in (model.get("labels") or {}).values()}

    datastore = app.datastore()
    install(server, labels_of, on_stored=getattr(datastore, "forget_lists", lambda: None), label_values=label_values,
            conf=app.conf)
