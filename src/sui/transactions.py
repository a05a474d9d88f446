"""Sui transactions the proxy signs: built as BCS `TransactionData` with pysui's BCS types, signed with
intent [0,0,0] (TransactionData) over blake2b-256, as every Sui wallet signs a transaction.

`acquire_stack_transaction` builds the Atoma contract's `db::acquire_new_stack_entry(AtomaDb, &mut
Coin<USDC>, task_small_id, num_compute_units, price_per_one_million_compute_units, &Random)` call,
the way Atoma's proxy does (its `acquire_new_stack_entry`), paid from the proxy's USDC coin.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pysui_fastcrypto as pfc
from pysui.sui.sui_bcs import bcs

from atoma_proxy.sui.crypto import SuiKeypair, blake2b256

__all__ = [
    "TRANSACTION_INTENT",
    "Ref",
    "acquire_stack_transaction",
    "decode_move_call",
    "sign_transaction",
    "transaction_digest",
]

TRANSACTION_INTENT = bytes([0, 0, 0])
RANDOM_OBJECT_ID = "0x0000000000000000000000000000000000000000000000000000000000000008"


@dataclass(frozen=True)
class Ref:
    """An object reference for a transaction input; `initial_shared_version` marks a shared object."""

    object_id: str
    version: int
    digest: str
    initial_shared_version: int | None = None


def _owned(ref: Ref) -> bcs.ObjectReference:
    return bcs.ObjectReference(bcs.Address.from_str(ref.object_id), ref.version, bcs.Digest.from_str(ref.digest))


def _shared(ref: Ref, *, mutable: bool) -> bcs.CallArg:
    if ref.initial_shared_version is None:
        raise ValueError(f"object {ref.object_id} is not shared")
    reference = bcs.SharedObjectReference(bcs.Address.from_str(ref.object_id), ref.initial_shared_version, mutable)
    return bcs.CallArg("Object", bcs.ObjectArg("SharedObject", reference))


def _u64(value: int) -> bcs.CallArg:
    return bcs.CallArg("Pure", list(value.to_bytes(8, "little")))


def acquire_stack_transaction(
    *,
    sender: str,
    package_id: str,
    atoma_db: Ref,
    usdc_coin: Ref,
    random: Ref,
    task_small_id: int,
    num_compute_units: int,
    price_per_one_million_compute_units: int,
    gas: list[Ref],
    gas_price: int,
    gas_budget: int,
) -> bytes:
    """BCS TransactionData of one `acquire_new_stack_entry` call."""
    inputs = [
        _shared(atoma_db, mutable=True),
        bcs.CallArg("Object", bcs.ObjectArg("ImmOrOwnedObject", _owned(usdc_coin))),
        _u64(task_small_id),
        _u64(num_compute_units),
        _u64(price_per_one_million_compute_units),
        _shared(random, mutable=False),
    ]
    call = bcs.ProgrammableMoveCall(
        bcs.Address.from_str(package_id),
        "db",
        "acquire_new_stack_entry",
        [],
        [bcs.Argument("Input", index) for index in range(len(inputs))],
    )
    kind = bcs.TransactionKind(
        "ProgrammableTransaction", bcs.ProgrammableTransaction(inputs, [bcs.Command("MoveCall", call)])
    )
    gas_data = bcs.GasData([_owned(g) for g in gas], bcs.Address.from_str(sender), gas_price, gas_budget)
    data = bcs.TransactionData(
        "V1",
        bcs.TransactionDataV1(kind, bcs.Address.from_str(sender), gas_data, bcs.TransactionExpiration("None", None)),
    )
    return bytes(data.serialize())


def sign_transaction(keypair: SuiKeypair, transaction: bytes) -> str:
    """The Sui signature of a transaction (intent [0,0,0] || BCS TransactionData, blake2b-256), through pysui."""
    signed = pfc.sign_digest(
        int(keypair.scheme), keypair.private_key_bytes(), base64.b64encode(transaction).decode(), TRANSACTION_INTENT
    )
    return base64.b64encode(bytes(signed)).decode()


def transaction_digest(transaction: bytes) -> bytes:
    """What a transaction signature signs: blake2b-256(intent || TransactionData)."""
    return blake2b256(TRANSACTION_INTENT + transaction)


def decode_move_call(transaction: bytes) -> tuple[str, str, str, list[bcs.CallArg]]:
    """(sender, package, module::function, inputs) of a one-call programmable transaction (tests, logs)."""
    data = bcs.TransactionData.deserialize(transaction).value
    ptb = data.TransactionKind.value
    (command,) = ptb.Command
    call = command.value
    return (
        data.Sender.to_address_str(),
        call.Package.to_address_str(),
        f"{call.Module}::{call.Function}",
        list(ptb.Inputs),
    )
