"""Browser sign-in for access tokens: OHIF's requests cannot carry a bearer header, so a user
signs in once on a form and the browser keeps the token in a cookie that page scripts cannot
read (HttpOnly) and that no other site's page can make the browser send (SameSite=Strict: no
cross-site request forgery). The cookie holds the token itself, so the token file stays the one
place that decides: removing a line signs that user out at their next request.
"""

import html
from http.cookies import SimpleCookie
from pathlib import Path
from string import Template
from typing import Iterable, Optional, Tuple

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from sarcopenia_app.access_tokens import TokenStore

COOKIE = "sarcopenia_token"
SIGN_IN_PATH = "/auth/session"
SIGN_OUT_PATH = "/auth/session/end"
DEFAULT_NEXT = "/ohif/"
COOKIE_MAX_AGE_S = 12 * 3600  # a working day; the token itself lasts until an admin removes it
PAGE = Template((Path(__file__).resolve().parents[1] / "ohif" / "signin.html").read_text())


def cookie_token(headers: Iterable[Tuple[bytes, bytes]]) -> Optional[str]:
    for name, value in headers:
        if name.lower() == b"cookie":
            morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
            if morsel is not None and morsel.value:
                return morsel.value
    return None


def safe_next(path: str) -> str:
    """Only a path on this server: never another site (``//host`` or ``https://...``)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return DEFAULT_NEXT
    return path


def sign_in_page(next_path: str, error: str = "") -> str:
    return PAGE.substitute(action=SIGN_IN_PATH, error=html.escape(error), next=html.escape(safe_next(next_path)))


def wants_html(headers: Iterable[Tuple[bytes, bytes]]) -> bool:
    """A browser opening a page (not a script's or client's request)."""
    return any(name.lower() == b"accept" and b"text/html" in value for name, value in headers)


def router(store: TokenStore) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get(SIGN_IN_PATH)
    async def form(next: str = DEFAULT_NEXT) -> HTMLResponse:
        return HTMLResponse(sign_in_page(next))

    @routes.post(SIGN_IN_PATH)
    async def sign_in(request: Request, username: str = Form(...), token: str = Form(...),
                      next: str = Form(DEFAULT_NEXT)):
        user = store.user_for(token)
        if user is None or user.user != username:
            return HTMLResponse(sign_in_page(next, "Unknown user name or token."), status_code=401)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @routes.post(SIGN_OUT_PATH)
    async def sign_out() -> RedirectResponse:
        response = RedirectResponse(f"{SIGN_IN_PATH}?next={DEFAULT_NEXT}", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return routes
