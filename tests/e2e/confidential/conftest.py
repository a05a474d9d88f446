"""One confidential deployment per database kind, shared by the tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.confidential.stack import ConfidentialStack, confidential_stack
from tests.support.databases import DATABASE_KINDS, temporary_database_sync


@pytest.fixture(scope="session", params=DATABASE_KINDS)
def conf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfidentialStack]:
    tmp = tmp_path_factory.mktemp(f"confidential-{request.param}")
    with temporary_database_sync(request.param) as database_url, confidential_stack(tmp, database_url) as stack:
        yield stack
