"""The arguments and startup of `atoma-proxy confidential-node`."""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
from pathlib import Path

from nacl.signing import SigningKey

__all__ = ["add_confidential_node_arguments", "read_seed", "run_confidential_node"]


def add_confidential_node_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--node-id", required=True, help="The node's id in the proxy's registry.")
    add("--engine-url", required=True, help="Base URL of the OpenAI-compatible engine, e.g. http://127.0.0.1:8000.")
    add("--core", action="append", default=[], metavar="TARGET", help="gRPC address of a core (repeat for each).")
    add(
        "--signing-key-file",
        required=True,
        type=Path,
        help="The node's Ed25519 seed (32 bytes, base64) or its Sui Ed25519 keystring, in a file.",
    )
    add(
        "--attestation-authority-key-file",
        type=Path,
        help="Ed25519 seed (base64) of the attestation authority that vouches for this node's TEE (simulation).",
    )
    add("--host", default="127.0.0.1", help="Listen host (default 127.0.0.1).")
    add("--port", type=int, default=3000, help="Listen port (default 3000).")
    add("--rotate-every", type=float, default=3600.0, help="Seconds between key rotations (default 3600).")
    add("--refresh-every", type=float, default=10.0, help="Seconds between re-registrations of the key (default 10).")
    add("--admin-token-file", type=Path, help="File holding the Bearer token of POST /v1/rotate-key.")
    add("--print-public-key", action="store_true", help="Print the node's Ed25519 public key (base64) and exit.")
    add(
        "--protocol",
        choices=("openai", "atoma"),
        default="openai",
        help="`atoma`: require the proxy's Sui X-Signature over plaintext_body_hash (default openai).",
    )
    add(
        "--proxy-address",
        action="append",
        default=[],
        metavar="SUI_ADDRESS",
        help="With --protocol atoma: a proxy's Sui address whose signature is accepted (repeat; default any).",
    )
    add(
        "--sui-keystring",
        default=None,
        help="With --protocol atoma: the node's Sui key signing plain answers (default: the signing key as a Sui key).",
    )


def read_seed(path: Path) -> SigningKey:
    """A 32-byte Ed25519 seed in base64, or a Sui keystring of an Ed25519 key (base64 of 0x00 || seed)."""
    try:
        seed = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, binascii.Error) as error:
        sys.exit(f"atoma-proxy confidential-node: cannot read a base64 key from {path}: {error}")
    if len(seed) == 33 and seed[0] == 0:
        seed = seed[1:]
    if len(seed) != 32:
        sys.exit(f"atoma-proxy confidential-node: {path} must hold an Ed25519 seed (32 bytes, base64), not {len(seed)}")
    return SigningKey(seed)


def run_confidential_node(args: argparse.Namespace) -> None:
    import uvicorn

    from atoma_proxy.confidential.node_keys import AuthorityAttester, NodeKeys
    from atoma_proxy.confidential.sidecar import Registrar, Sidecar, SidecarConfig, build_app

    identity = read_seed(args.signing_key_file)
    if args.print_public_key:
        print(base64.b64encode(identity.verify_key.encode()).decode())
        return
    if not args.core:
        sys.exit("atoma-proxy confidential-node: name at least one core with --core")
    if args.attestation_authority_key_file is None:
        sys.exit("atoma-proxy confidential-node: --attestation-authority-key-file is required (no TEE attester here)")
    attester = AuthorityAttester(read_seed(args.attestation_authority_key_file))
    admin_token = args.admin_token_file.read_text().strip() if args.admin_token_file else None
    config = SidecarConfig(
        node_id=args.node_id,
        engine_url=args.engine_url,
        core_targets=args.core,
        rotate_every=args.rotate_every,
        refresh_every=args.refresh_every,
        admin_token=admin_token,
        protocol=args.protocol,
        proxy_addresses=tuple(args.proxy_address),
        sui_keystring=args.sui_keystring,
    )
    registrar = Registrar(args.core, bytes(identity.verify_key))
    sidecar = Sidecar(config, NodeKeys(args.node_id, identity, attester), registrar)
    uvicorn.run(build_app(sidecar), host=args.host, port=args.port, log_level="warning", access_log=False)
