"""A Sui GraphQL RPC on loopback, answering from recorded data (see server.py)."""

from tests.support.sui_chain.server import LocalChain, RunningChain, start_chain

__all__ = ["LocalChain", "RunningChain", "start_chain"]
