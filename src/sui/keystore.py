"""The proxy's Sui keypair from a Sui keystore file, as the `sui` CLI writes it.

`sui.keystore` is a JSON array of keystrings (base64 `flag || private key`, or bech32
`suiprivkey1...`). Which key is the proxy's: `address` when given, else the `active_address` of the
Sui client configuration (`client.yaml`) when one is given, else the keystore's only key.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from atoma_proxy.sui.crypto import SuiKeypair, normalize_address

__all__ = ["KeystoreError", "active_address", "load_keypair", "read_keystore"]


class KeystoreError(ValueError):
    """A keystore or client configuration that cannot give the proxy its key."""


def read_keystore(path: str | Path) -> list[SuiKeypair]:
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise KeystoreError(f"cannot read Sui keystore {path}: {error}") from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise KeystoreError(f"Sui keystore {path} is not a JSON array of keystrings")
    keys = []
    for index, entry in enumerate(entries):
        try:
            keys.append(SuiKeypair.from_keystring(entry))
        except ValueError as error:
            raise KeystoreError(f"Sui keystore {path}, entry {index}: {error}") from None
    return keys


def active_address(client_config_path: str | Path) -> str | None:
    """The `active_address` of a Sui client.yaml, if it names one."""
    try:
        config = yaml.safe_load(Path(client_config_path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise KeystoreError(f"cannot read Sui client config {client_config_path}: {error}") from None
    address = config.get("active_address") if isinstance(config, dict) else None
    return normalize_address(address) if isinstance(address, str) and address else None


def load_keypair(
    keystore_path: str | Path, *, client_config_path: str | Path | None = None, address: str | None = None
) -> SuiKeypair:
    keys = read_keystore(keystore_path)
    wanted = normalize_address(address) if address else None
    if wanted is None and client_config_path is not None and Path(client_config_path).exists():
        wanted = active_address(client_config_path)
    if wanted is not None:
        for key in keys:
            if key.address == wanted:
                return key
        raise KeystoreError(f"Sui keystore {keystore_path} has no key for {wanted}")
    if len(keys) != 1:
        raise KeystoreError(
            f"Sui keystore {keystore_path} holds {len(keys)} keys: name the proxy's with an active_address"
        )
    return keys[0]
