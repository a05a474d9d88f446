"""Tables of confidential inference (docs/confidential.md): nodes' registered keys and the locks granted.

Shared by every core instance and worker on the database: a key registered through one is offered
by all, and a lock granted by one is taken (once) through any. Every transition is one conditional
statement (a rotation only replaces an older one; a lock goes `consumed` or `released` once, never both).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, false, func
from sqlalchemy.orm import Mapped, mapped_column

from atoma_proxy.core.persistence.models import Base, UTCDateTime, utcnow

__all__ = ["ConfidentialLock", "ConfidentialNodeKey"]


class ConfidentialNodeKey(Base):
    """A node's latest accepted X25519 key: its rotation, evidence and validity (one row per node)."""

    __tablename__ = "confidential_node_keys"

    node_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    rotation_counter: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rotation_nonce: Mapped[str] = mapped_column(String(20), nullable=False)  # u64, as decimal text
    evidence: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    signing_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # the node's Ed25519 key
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    registered_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, server_default=func.now()
    )


class ConfidentialLock(Base):
    """A node locked for one confidential request, with the ledger reservation (`request_id`) it holds."""

    __tablename__ = "confidential_locks"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # stack_small_id
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    node_id: Mapped[str] = mapped_column(String(255), nullable=False)
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(32), nullable=False)
    max_num_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    rotation_counter: Mapped[int] = mapped_column(BigInteger, nullable=False)  # the key locked
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)  # the reservation's (the call's) id
    metered: Mapped[bool] = mapped_column(Boolean, nullable=False)  # a reservation was made
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    consumed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    released: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, server_default=func.now())
