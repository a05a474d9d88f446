"""Tables of the proxy's Sui side (README "Sui"): what the chain's Atoma events said, the event cursor,
wallets proven by users and USDC deposits credited.

Chain state is kept as the events left it, written so that applying an event twice, or two events
in either order, gives the same rows: fields are filled once (creation, claim), flags only turn on
(deprecated, claimed), and the one state that can flip (a subscription) keeps the chain position of
the event that last set it and ignores older ones. u64 values that may exceed BIGINT (nonces) are text.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, false, func
from sqlalchemy.orm import Mapped, mapped_column

from atoma_proxy.core.persistence.models import Base, BigIntPK, UTCDateTime, utcnow

__all__ = [
    "SuiAppliedEvent",
    "SuiCursor",
    "SuiKeyRotation",
    "SuiNode",
    "SuiNodePublicKey",
    "SuiNodeSubscription",
    "SuiStack",
    "SuiStackPurchase",
    "SuiTask",
    "SuiUsdcDeposit",
    "SuiWallet",
    "SuiWalletChallenge",
]

_ADDRESS = 66  # 0x + 64 hex digits


def _flag() -> Mapped[bool]:
    return mapped_column(Boolean, nullable=False, default=False, server_default=false())


class SuiNode(Base):
    """A node of the Atoma contract: its Sui address (NodeRegisteredEvent) and its signed public URL."""

    __tablename__ = "sui_nodes"

    node_small_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sui_address: Mapped[str | None] = mapped_column(String(_ADDRESS))
    badge_id: Mapped[str | None] = mapped_column(String(_ADDRESS))
    public_address: Mapped[str | None] = mapped_column(String(512))
    country: Mapped[str | None] = mapped_column(String(8))
    # Unix seconds of the last accepted signed registration: a registration must be newer.
    registration_timestamp: Mapped[int | None] = mapped_column(BigInteger)


class SuiTask(Base):
    __tablename__ = "sui_tasks"

    task_small_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    task_id: Mapped[str | None] = mapped_column(String(_ADDRESS))
    model_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[int | None] = mapped_column(Integer)
    security_level: Mapped[int | None] = mapped_column(Integer)
    valid_until_epoch: Mapped[int | None] = mapped_column(BigInteger)
    is_deprecated: Mapped[bool] = _flag()
    deprecated_at_epoch: Mapped[int | None] = mapped_column(BigInteger)


class SuiNodeSubscription(Base):
    __tablename__ = "sui_node_subscriptions"

    node_small_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    task_small_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    price_per_one_million_compute_units: Mapped[int] = mapped_column(BigInteger, nullable=False)
    max_num_compute_units: Mapped[int] = mapped_column(BigInteger, nullable=False)
    valid: Mapped[bool] = mapped_column(Boolean, nullable=False)
    position: Mapped[str] = mapped_column(String(100), nullable=False)  # chain order of the last event applied


class SuiStack(Base):
    __tablename__ = "sui_stacks"

    stack_small_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    stack_id: Mapped[str | None] = mapped_column(String(_ADDRESS))
    owner: Mapped[str | None] = mapped_column(String(_ADDRESS))
    task_small_id: Mapped[int | None] = mapped_column(BigInteger)
    selected_node_id: Mapped[int | None] = mapped_column(BigInteger)
    num_compute_units: Mapped[int | None] = mapped_column(BigInteger)
    price_per_one_million_compute_units: Mapped[int | None] = mapped_column(BigInteger)
    created_digest: Mapped[str | None] = mapped_column(String(64))
    in_settle_period: Mapped[bool] = _flag()
    num_claimed_compute_units: Mapped[int | None] = mapped_column(BigInteger)
    is_claimed: Mapped[bool] = _flag()
    user_refund_amount: Mapped[int | None] = mapped_column(BigInteger)


class SuiKeyRotation(Base):
    __tablename__ = "sui_key_rotations"

    key_rotation_counter: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False)
    nonce: Mapped[str] = mapped_column(String(20), nullable=False)  # u64, as decimal text


class SuiNodePublicKey(Base):
    """A node's committed confidential-compute key per device (NodePublicKeyCommittmentEvent); latest rotation wins."""

    __tablename__ = "sui_node_public_keys"

    node_small_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    device_type: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False)
    key_rotation_counter: Mapped[int] = mapped_column(BigInteger, nullable=False)
    public_key: Mapped[str] = mapped_column(Text, nullable=False)  # base64
    evidence_bytes: Mapped[str] = mapped_column(Text, nullable=False)  # base64


class SuiAppliedEvent(Base):
    """Events already applied, by (transaction digest, position in the transaction): a replay changes nothing."""

    __tablename__ = "sui_applied_events"

    tx_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_type: Mapped[str] = mapped_column(String(255), nullable=False)


class SuiCursor(Base):
    """Where each event stream stopped: saved with the page's effects, so a restart resumes there."""

    __tablename__ = "sui_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str] = mapped_column(String(512), nullable=False)


class SuiWallet(Base):
    """A Sui address a user proved to own; one address belongs to one user, one user has one address."""

    __tablename__ = "sui_wallets"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(_ADDRESS), nullable=False, unique=True)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


class SuiWalletChallenge(Base):
    """A one-time, expiring message a user signs with the wallet being linked."""

    __tablename__ = "sui_wallet_challenges"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SuiUsdcDeposit(Base):
    """A USDC transfer credited to a user: the digest is the replay guard (and the credit's idempotency key)."""

    __tablename__ = "sui_usdc_deposits"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    sender: Mapped[str] = mapped_column(String(_ADDRESS), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)  # USDC units = micro-USD
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


class SuiStackPurchase(Base):
    """A stack bought on chain for a user: paid from the balance first, refunded if the transaction fails.

    `pending` until the transaction's outcome is known; then `confirmed` (with the stack's small id and
    the ledger stack it became) or `refunded`.
    """

    __tablename__ = "sui_stack_purchases"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    task_small_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    price_paid: Mapped[int] = mapped_column(BigInteger, nullable=False)  # micro-USD taken from the balance
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    digest: Mapped[str | None] = mapped_column(String(64))
    stack_small_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    ledger_stack_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
