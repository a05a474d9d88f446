"""The `atoma-proxy` command: every command has --help, and keys are printed once and work."""

from __future__ import annotations

import pytest

from tests.support.processes import run_command


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["core"],
        ["facade"],
        ["demo"],
        ["node-sim"],
        ["keys"],
        ["keys", "create"],
        ["users"],
        ["users", "create"],
        ["db"],
        ["db", "upgrade"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    output = run_command(*command, "--help")
    assert output.startswith("usage: atoma-proxy")
