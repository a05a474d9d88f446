"""One canonical email everywhere: NFKC + case folding, the same through Register, Login and the CLI's lookups."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.accounts import validation
from atoma_proxy.core.accounts.logins import Logins
from atoma_proxy.core.emails import canonical_email
from atoma_proxy.core.errors import AlreadyExists
from atoma_proxy.core.persistence.api_keys import UserRepository
from tests.core.accounts.conftest import new_email


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("  Ada@Example.COM ", "ada@example.com"),
        ("\uff21\uff44\uff41@example.com", "ada@example.com"),  # full-width letters
        ("STRASSE@example.com", "strasse@example.com"),
        ("straße@example.com", "strasse@example.com"),
        ("\ufb01le@example.com", "file@example.com"),  # the ligature fi
        ("al\u0130ce@example.com", "ali\u0307ce@example.com"),  # a dotted capital I stays a dotted i
    ],
)
def test_canonical_email_is_nfkc_casefolded_and_idempotent(given: str, canonical: str) -> None:
    assert canonical_email(given) == canonical
    assert canonical_email(canonical) == canonical
    assert validation.normalize_email(given) == canonical


async def test_email_variants_are_one_account_for_register_login_and_the_cli(
    logins: Logins, sessions: async_sessionmaker[AsyncSession]
) -> None:
    local = new_email().split("@")[0]
    user = await logins.register(validation.normalize_email(f"{local}@example.com"), "password123")

    with pytest.raises(AlreadyExists):
        await logins.register(validation.normalize_email(f"{local.upper()}@EXAMPLE.com"), "password123")
    grant = await logins.login(validation.normalize_email(f"{local.upper()}@Example.com"), "password123")
    async with sessions() as session, session.begin():
        found = await UserRepository(session).get_or_create_by_email(f" {local.upper()}@EXAMPLE.COM")

    assert grant.access_token
    assert found.id == user.id
