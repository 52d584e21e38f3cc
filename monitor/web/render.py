"""The web pages' Jinja2 environment (templates/web, autoescaped) and how a page is answered."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from monitor.paths import templates_dir
from monitor.web.auth import csrf_token

HTMX = "htmx-2.0.11.min.js"


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(templates_dir()) / "web"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: "" if v is None else f"{v:g}"
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f} %"
    env.globals["htmx"] = HTMX
    return env


def page(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    """A page for the request's user (or none), with the session's CSRF token for its forms."""
    user = getattr(request.state, "user", None)
    csrf = csrf_token(request)
    html = environment().get_template(name).render(
        request=request, user=user, csrf=csrf,
        csrf_field=Markup('<input type="hidden" name="csrf" value="{}">').format(csrf), **context)
    return HTMLResponse(html, status_code=status)
