"""The proxy's Sui identity, from the `[sui]` settings."""

from __future__ import annotations

from atoma_proxy.config import Settings, SuiSettings
from atoma_proxy.sui.crypto import SuiKeypair
from atoma_proxy.sui.keystore import load_keypair

__all__ = ["check_atoma_nodes", "proxy_keypair"]


def proxy_keypair(settings: SuiSettings) -> SuiKeypair | None:
    """The proxy's keypair when a keystore is configured (KeystoreError when it cannot be used)."""
    if not settings.sui_keystore_path:
        return None
    return load_keypair(
        settings.sui_keystore_path, client_config_path=settings.sui_config_path, address=settings.address
    )


def check_atoma_nodes(settings: Settings, keypair: SuiKeypair | None) -> None:
    """Atoma-protocol nodes need the proxy's key: refuse to start without it rather than send unsigned."""
    atoma = [n.id for n in settings.nodes if n.protocol == "atoma"]
    if atoma and keypair is None:
        raise ValueError(f"nodes {', '.join(atoma)} use protocol 'atoma': set [sui] sui_keystore_path")
