"""The web console (README "Web console"): static files under /console, and / redirecting there.

The console is plain HTML, CSS and JavaScript modules (src/facade/console/), with no build step: the
browser calls the facade's own REST routes (/v1/auth/*, /v1/api-keys, /v1/usage, /v1/admin/*) with
the user's access token or the operator's admin token, which it keeps in sessionStorage only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

__all__ = ["CONSOLE_DIRECTORY", "add_console"]

CONSOLE_DIRECTORY = Path(__file__).parent / "console"
# The console's pages load nothing from elsewhere: scripts, styles and data come from this origin only.
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


#: What the console folder serves; anything else in it (its __init__.py) is not for browsers.
_SERVED_SUFFIXES = (".html", ".js", ".css")


class _ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ("", ".") and not path.endswith(_SERVED_SUFFIXES):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def add_console(app: FastAPI) -> None:
    """Serve the console at /console/ and redirect / to it."""

    async def to_console() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    app.add_api_route("/", to_console, methods=["GET"], include_in_schema=False)
    app.mount("/console", _ConsoleFiles(directory=CONSOLE_DIRECTORY, html=True), name="console")
