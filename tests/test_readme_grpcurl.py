"""The README's "gRPC with grpcurl" recipes name RPCs the core serves, with bodies that parse as their requests.

grpcurl parses `-d` as proto3 JSON, which google.protobuf.json_format reads the same way (original or
lowerCamelCase names, 64-bit integers as strings or numbers, enums by name, unknown fields refused).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2

from atoma_proxy.core.server import ACCOUNT_SERVICES, NODE_ADMIN_SERVICE, ROUTING_SERVICE

README = Path(__file__).resolve().parents[1] / "README.md"
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
ACCOUNT_SERVICE, ACCOUNT_ADMIN_SERVICE = ACCOUNT_SERVICES
# The credential each service takes (README "gRPC with grpcurl"); None: no authorization header.
CREDENTIALS: dict[str, set[str | None]] = {
    ROUTING_SERVICE: {"$KEY"},
    ACCOUNT_SERVICE: {"$TOKEN", None},
    ACCOUNT_ADMIN_SERVICE: {"$ADMIN_TOKEN"},
    NODE_ADMIN_SERVICE: {"$ADMIN_TOKEN"},
    HEALTH: {None},
}
# The AccountService RPCs that take no credential.
PUBLIC_RPCS = {"Register", "Login", "RefreshToken", "Logout"}


def _recipes() -> list[list[str]]:
    """Each grpcurl command of the section, as shell words (continuation lines joined, comments dropped)."""
    section = README.read_text().split("\n## gRPC with grpcurl\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        starts = [i for i, word in enumerate(words) if word == "grpcurl" or word.endswith("$(grpcurl")]
        if starts:
            commands.append(["grpcurl", *words[starts[0] + 1 :]])
    return commands


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def _target(words: list[str]) -> str:
    """The `pkg.Service/Method` or the `list`/`describe` verb the command ends with (before any pipe)."""
    words = words[: words.index("|")] if "|" in words else words
    return words[-1] if words[-2] != "describe" else f"describe {words[-1]}"


RECIPES = _recipes()


def test_every_service_has_a_recipe() -> None:
    targets = [_target(words) for words in RECIPES]
    services = {target.split("/")[0] for target in targets if "/" in target}
    assert services == set(CREDENTIALS)
    assert "list" in targets  # server reflection
    assert any(target.startswith("describe ") for target in targets)


@pytest.mark.parametrize("words", RECIPES, ids=[_target(words) for words in RECIPES])
def test_recipe_matches_the_protos(words: list[str]) -> None:
    pool = descriptor_pool.Default()
    target = _target(words)
    assert "-plaintext" in words
    if target == "list":
        return
    if target.startswith("describe "):
        symbol = target.removeprefix("describe ")
        assert pool.FindFileContainingSymbol(symbol) is not None
        return
    service_name, method_name = target.split("/")
    method = pool.FindServiceByName(service_name).methods_by_name[method_name]
    request = message_factory.GetMessageClass(method.input_type)()
    body = _option(words, "-d")
    if body is not None:
        json_format.Parse(body, request)  # raises on an unknown field or a value of the wrong type
    header = _option(words, "-H")
    credential = header.removeprefix("authorization: Bearer ") if header else None
    allowed = {None} if method_name in PUBLIC_RPCS else CREDENTIALS[service_name] - {None} or {None}
    assert credential in allowed, f"{target} sends {credential}"


def test_the_recipes_are_read() -> None:
    """A guard on the parser above: the section's commands are all found, bodies included."""
    assert len(RECIPES) >= 30
    assert sum(1 for words in RECIPES if "-d" in words) >= 20
