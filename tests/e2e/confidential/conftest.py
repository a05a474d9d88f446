"""One confidential deployment (SQLite) shared by the tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.confidential.stack import ConfidentialStack, confidential_stack
from tests.support.databases import temporary_database_sync


@pytest.fixture(scope="session")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfidentialStack]:
    tmp = tmp_path_factory.mktemp("confidential")
    with temporary_database_sync("sqlite") as database_url, confidential_stack(tmp, database_url) as stack:
        yield stack
