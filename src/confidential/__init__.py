"""Confidential inference: the wire protocol shared by the node sidecar, the clients and the core.

The core only uses `envelope` (field checks) and `signing` (usage signatures); it never holds a key
that decrypts. docs/confidential.md is the specification; tests/confidential/ checks its vectors.
"""
