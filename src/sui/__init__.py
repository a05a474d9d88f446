"""Sui primitives shared by the proxy's core and the node simulator: keys, addresses, signatures,
serde_json-compatible serialization and the Atoma node protocol's signing rules."""
