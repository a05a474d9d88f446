"""One list of reasons: every ErrorInfo reason the core can send is a value of the ErrorReason proto enum.

The reasons come from three places in the code: the error classes' own `reason`, the `reason="..."` given
when one is raised, and the node's verdicts the confidential path passes on. Each must be in the enum, and
REASONS (code of each reason) and the README's error table must cover the enum exactly.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import atoma_proxy.core
from atoma_proxy.core.confidential.node_client import _TAMPERED
from atoma_proxy.core.errors import REASONS, ProxyError
from atoma_proxy.wire.reasons import ALL_REASONS, PREFIX, ErrorReason, reason_name, reason_value

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "src" / "core"
PROTO = ROOT / "protos" / "atoma" / "routing" / "v1" / "error_reason.proto"
README = ROOT / "README.md"


def _error_classes() -> Iterator[type[ProxyError]]:
    for module in pkgutil.walk_packages(atoma_proxy.core.__path__, "atoma_proxy.core."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    pending = [ProxyError]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


def _literal_reasons() -> Iterator[tuple[str, str]]:
    """(where, reason) of every `reason="..."` keyword and `reason = "..."` assignment in src/core."""
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.keyword) and node.arg == "reason" and isinstance(node.value, ast.Constant):
                yield where, node.value.value
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                if any(isinstance(target, ast.Name) and target.id == "reason" for target in node.targets):
                    yield where, node.value.value


def test_every_error_class_reason_is_in_the_enum() -> None:
    # NotFound has no reason of its own (every NotFound names one); it inherits INTERNAL.
    outside = {cls.__qualname__: cls.reason for cls in _error_classes() if cls.reason not in ALL_REASONS}
    assert outside == {}


def test_every_reason_given_in_the_code_is_in_the_enum() -> None:
    found = list(_literal_reasons())
    assert len(found) > 40  # the scan sees the raise sites
    assert [(where, reason) for where, reason in found if reason not in ALL_REASONS] == []


def test_the_node_verdicts_passed_on_as_reasons_are_in_the_enum() -> None:
    assert _TAMPERED <= ALL_REASONS


def test_reasons_gives_each_enum_value_the_code_its_comment_documents() -> None:
    documented = dict(
        (name, getattr(grpc.StatusCode, code))
        for code, name in re.findall(r"// ([A-Z_]+)\. [^\n]*\n  ERROR_REASON_([A-Z_]+) = \d+;", PROTO.read_text())
    )
    assert set(documented) == ALL_REASONS
    assert REASONS == documented


def test_the_readme_error_table_lists_every_reason() -> None:
    table = "\n".join(line for line in README.read_text().splitlines() if line.startswith("| `"))
    assert sorted(reason for reason in ALL_REASONS if f"`{reason}`" not in table) == []


def test_the_reason_that_was_never_raised_is_gone() -> None:
    assert "DEADLINE_EXCEEDED" not in ALL_REASONS


@pytest.mark.parametrize("value", [v for v in ErrorReason.values() if v != ErrorReason.ERROR_REASON_UNSPECIFIED])
def test_a_reason_is_its_enum_name_without_the_prefix(value: int) -> None:
    name = reason_name(value)  # type: ignore[arg-type]

    assert f"{PREFIX}{name}" == ErrorReason.Name(value)
    assert reason_value(name) == value


def test_unknown_and_unspecified_reasons() -> None:
    assert "UNSPECIFIED" not in ALL_REASONS
    assert reason_value("NO_SUCH_REASON") == ErrorReason.ERROR_REASON_UNSPECIFIED
