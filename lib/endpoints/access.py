"""Who may call what: bearer tokens checked in front of every route (MONAI Label's own RBAC
needs a Keycloak server, which cannot run everywhere; see docs/reliability.md).

Only admins start or stop training, upload or delete models, delete images or labels, run
scoring or batch inference, and read the server logs; annotators (and reviewers, admins) save
labels and images; any known user reads and runs inference. Anonymous requests get 401 on
every route except ``/auth/`` (so a client can see that it must log in) and ``/auth/token``.
Upstream 0.8.5 lets annotators upload and delete models: the rules here do not.

MONAI Label's clients work unchanged: the Python client and 3D Slicer log in through
``/auth/token`` with the user name and the token as password, then send the token as a Bearer
header.
"""

import json
import logging
from typing import Awaitable, Callable, Iterable, Optional, Tuple

from fastapi import APIRouter, Form, HTTPException

from sarcopenia_app.access_tokens import ROLES, TokenStore, TokenUser

logger = logging.getLogger(__name__)

ADMIN = frozenset({ROLES["admin"]})
ANNOTATE = frozenset({ROLES["admin"], ROLES["reviewer"], ROLES["annotator"]})
ANY_USER = frozenset(ROLES.values())
PUBLIC_PATHS = ("/auth/", "/auth/token")

# (methods, path prefix, roles allowed); the first match wins, so specific rules come first
RULES: Tuple[Tuple[Tuple[str, ...], str, frozenset], ...] = (
    (("POST", "PUT", "DELETE"), "/train", ADMIN),
    (("GET", "PUT", "DELETE"), "/model", ADMIN),
    (("DELETE",), "/datastore", ADMIN),
    (("POST", "DELETE"), "/scoring", ADMIN),
    (("POST", "DELETE"), "/batch", ADMIN),
    (("GET",), "/logs", ADMIN),
    (("PUT", "POST"), "/datastore", ANNOTATE),
    (("GET",), "/datastore/dataset", ANNOTATE),
    (("POST",), "/proxy", ANNOTATE),  # a STOW through the DICOMweb proxy stores a label (OHIF's SEG export)
)


def roles_for(method: str, path: str) -> frozenset:
    """The roles that may call ``method path``; any known user for what no rule names."""
    for methods, prefix, roles in RULES:
        if method in methods and (path == prefix or path.startswith(prefix + "/")):
            return roles
    return ANY_USER


Send = Callable[[dict], Awaitable[None]]


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bearer_token(headers: Iterable[Tuple[bytes, bytes]]) -> Optional[str]:
    """From ``Authorization: Bearer ...`` (never from the URL, which ends up in logs and histories)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class TokenAccess:
    """ASGI middleware: 401 without a known token, 403 without the role the route needs."""

    def __init__(self, app, store: TokenStore):
        self.app, self.store = app, store

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        token = bearer_token(scope.get("headers", []))
        user: Optional[TokenUser] = self.store.user_for(token) if token else None
        if user is None:
            return await _refuse(send, 401, "log in first: send 'Authorization: Bearer <token>' "
                                            "(ask an admin for a token)")
        allowed = roles_for(scope["method"], scope["path"])
        if not user.roles & allowed:
            logger.info(f"refused {scope['method']} {scope['path']} for user {user.user}")
            return await _refuse(send, 403, f"{scope['method']} {scope['path']} needs one of the roles "
                                            f"{sorted(allowed)}; you have {sorted(user.roles)}")
        scope.setdefault("state", {})["user"] = user.user
        return await self.app(scope, receive, send)


def login_router(store: TokenStore) -> APIRouter:
    """``/auth/`` and ``/auth/token`` as MONAI Label's clients expect them (password = the token)."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/auth/")
    async def auth_info():
        return {"enabled": True, "client_id": "sarcopenia-tokens", "realm": "token-file"}

    @routes.post("/auth/token")
    async def token(username: str = Form(...), password: str = Form(...)):
        user = store.user_for(password)
        if user is None or user.user != username:
            raise HTTPException(status_code=401, detail="unknown user or token", headers={"WWW-Authenticate": "Bearer"})
        return {"access_token": password, "token_type": "Bearer"}

    return routes
