"""The console's static files: / redirects to them, they are served with a strict CSP, nothing else is."""

from __future__ import annotations

import re

import httpx

from atoma_proxy.facade.console_routes import CONSOLE_DIRECTORY
from tests.facade.conftest import RunningFacade


async def test_root_redirects_to_the_console_which_serves_its_files_with_a_strict_policy(
    facade: RunningFacade,
) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        root = await http.get("/")
        bare = await http.get("/console")  # relative links of the page need the trailing slash
        page = await http.get("/console/")
        script = await http.get("/console/app.js")
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    assert bare.status_code == 307 and bare.headers["location"].endswith("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.text == (CONSOLE_DIRECTORY / "app.js").read_text()


async def test_only_the_console_folder_is_served(facade: RunningFacade) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        missing = await http.get("/console/nope.js")
        escape = await http.get("/console/%2e%2e/console_routes.py")
        python = await http.get("/console/__init__.py")
    assert missing.status_code == 404
    assert escape.status_code == 404
    assert python.status_code == 404


def test_the_console_loads_nothing_from_elsewhere() -> None:
    """Every src and href of the page and every import of the modules is a file of the console folder."""
    page = (CONSOLE_DIRECTORY / "index.html").read_text()
    for reference in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert reference == "data:," or (CONSOLE_DIRECTORY / reference).is_file(), reference
    for module in CONSOLE_DIRECTORY.glob("*.js"):
        for imported in re.findall(r'from "([^"]+)"', module.read_text()):
            assert imported.startswith("./") and (CONSOLE_DIRECTORY / imported).is_file(), (module.name, imported)
