"""Who may call what: bearer tokens checked in front of every route (MONAI Label's own RBAC
needs a Keycloak server, which cannot run everywhere; see docs/reliability.md).

Only admins start or stop training, upload or delete models, delete images or labels, run
scoring or batch inference, and read the server logs; annotators (and reviewers, admins) save
labels and images; any known user reads and runs inference. Anonymous requests get 401 on
every route except ``/auth/`` (so a client can see that it must log in), ``/auth/token`` and the
browser sign-in (lib/endpoints/signin.py); a browser opening a page gets the sign-in form with it.
Upstream 0.8.5 lets annotators upload and delete models: the rules here do not.

MONAI Label's clients work unchanged: the Python client and 3D Slicer log in through
``/auth/token`` with the user name and the token as password, then send the token as a Bearer
header. Browsers (OHIF) sign in on a form and send the token in an HttpOnly, SameSite=Strict
cookie, checked here exactly like the header.
"""

import json
import logging
from typing import Awaitable, Callable, Iterable, Optional, Tuple

from fastapi import APIRouter, Form, HTTPException

from lib.endpoints.signin import SIGN_IN_PATH, SIGN_OUT_PATH, cookie_token, sign_in_page, wants_html
from sarcopenia_app.access_tokens import ROLES, TokenStore, TokenUser

logger = logging.getLogger(__name__)

ADMIN = frozenset({ROLES["admin"]})
ANNOTATE = frozenset({ROLES["admin"], ROLES["reviewer"], ROLES["annotator"]})
ANY_USER = frozenset(ROLES.values())
PUBLIC_PATHS = ("/auth/", "/auth/token", SIGN_IN_PATH, SIGN_OUT_PATH)

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


async def _refuse(send: Send, status: int, detail: str, sign_in_for: Optional[str] = None) -> None:
    """JSON with the reason; for a browser opening a page without a token, the sign-in form."""
    if sign_in_for is not None:
        body, content_type = sign_in_page(sign_in_for).encode(), b"text/html; charset=utf-8"
    else:
        body, content_type = json.dumps({"detail": detail}).encode(), b"application/json"
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
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
        headers = scope.get("headers", [])
        token = bearer_token(headers) or cookie_token(headers)
        user: Optional[TokenUser] = self.store.user_for(token) if token else None
        if user is None:
            page = scope["method"] == "GET" and wants_html(headers)
            query = scope.get("query_string", b"").decode("latin-1")
            return await _refuse(send, 401, "log in first: send 'Authorization: Bearer <token>', or sign in at "
                                            f"{SIGN_IN_PATH} in a browser (ask an admin for a token)",
                                 sign_in_for=scope["path"] + (f"?{query}" if query else "") if page else None)
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
