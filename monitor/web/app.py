"""The admin and coordinator web app: `create_app(App)` builds it (routes in pages.py and api.py).

Server-rendered Jinja2 pages that work without JavaScript (HTMX, vendored, only makes them
quicker); a signed session cookie (Secure, HttpOnly, SameSite=Lax); a CSRF token on every form;
security headers on every response; a JSON API under /api with bearer tokens."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from monitor.app import App
from monitor.domain.errors import NotFound, UserError
from monitor.paths import templates_dir
from monitor.web import api, pages
from monitor.web.auth import ApiUser, LoginNeeded
from monitor.web.render import page

log = logging.getLogger(__name__)

#: No inline script or style, no other origin, never framed; patient pages never cached.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin",
           "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}


def create_app(a: App) -> FastAPI:
    settings = a.settings.web
    key = settings.secret_key.get_secret_value()
    if not key:
        key = secrets.token_urlsafe(32)
        log.warning("web.secret_key is not set: sessions end when the server restarts, and several "
                    "workers cannot share them (set MONITOR_WEB__SECRET_KEY; docs/deploy.md)")
    web = FastAPI(title="monitor", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Longitudinal monitoring of patients on azathioprine: the JSON API. "
                              "Every route needs `Authorization: Bearer <token>` (`monitor tokens add`).")
    web.state.monitor = a
    web.add_middleware(SessionMiddleware, secret_key=key, session_cookie="monitor_session",
                       max_age=int(settings.session_hours * 3600), same_site="lax",
                       https_only=settings.secure_cookies)

    @web.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    web.include_router(pages.router)
    web.include_router(api.router)
    web.mount("/static", StaticFiles(directory=Path(templates_dir()) / "web" / "static"), name="static")

    @web.exception_handler(LoginNeeded)
    async def login_needed(request: Request, _: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    def answer(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        if request.url.path.startswith("/api"):
            response: Response = JSONResponse({"detail": message}, status_code=status, headers=headers)
        else:
            response = page(request, "error.html", {"status": status, "message": message}, status=status)
        response.headers.update({**HEADERS, "Cache-Control": "no-store"})  # also outside the middleware (a 500)
        return response

    @web.exception_handler(HTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        message = error.detail if isinstance(error.detail, str) else "not found" if error.status_code == 404 else \
            "request refused"
        return answer(request, error.status_code, message, dict(error.headers or {}))

    @web.exception_handler(NotFound)
    async def not_found(request: Request, error: Exception) -> Response:
        return answer(request, 404, "not found: " + str(error).split(";")[0])

    @web.exception_handler(UserError)
    async def user_error(request: Request, error: Exception) -> Response:
        return answer(request, 400, str(error))

    @web.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        return answer(request, 422, f"invalid request ({where})")

    @web.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> Response:
        # A bug: logged by type and route only (an exception's text may hold a statement's values).
        log.error("web request failed", extra={"route": request.scope.get("route") and request.scope["route"].path,
                                               "error": type(error).__name__})
        return answer(request, 500, "monitor could not answer this request (a bug, logged); try again or tell "
                                    "your administrator")

    @web.get("/api/openapi.json", include_in_schema=False)
    def openapi(request: Request, user: ApiUser) -> dict[str, Any]:
        schema: dict[str, Any] = web.openapi()
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        return schema

    return web
