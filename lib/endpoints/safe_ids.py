"""Refuse path traversal in the ids every route takes from the query string.

MONAI Label 0.8.5 joins ``image``, ``label``, ``id`` and ``tag`` into file paths (``tag=../..``
writes a label outside the datastore; an ``image`` that is a server path is read as one). This
ASGI middleware answers 422 before any route sees such a value.
"""

import json
from urllib.parse import parse_qsl

from sarcopenia_app.safe_names import UnsafeNameError, check_safe_name

CHECKED_PARAMS = {"image": "image id", "label": "label id", "id": "id", "tag": "label tag"}


class SafeIds:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            try:
                for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=False):
                    if key in CHECKED_PARAMS:
                        check_safe_name(value, CHECKED_PARAMS[key])
            except UnsafeNameError as error:
                body = json.dumps({"detail": str(error)}).encode()
                await send({"type": "http.response.start", "status": 422,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, send)
