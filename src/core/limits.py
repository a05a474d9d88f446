"""Bounds of the integers that come from outside (clients, operators, configuration).

Chosen so that no sum the ledger keeps can overflow a signed 64-bit integer (PostgreSQL BIGINT;
SQLite turns an overflowing sum into a float): a balance's `credited` total stays at most
`MAX_CREDITED_MICRO_USD` (2^62), `debited` and `reserved` are bounded by it, and one credit, one
stack or one request's reservation adds at most a small fraction of the headroom left. Every bound
is checked where the value enters (the core's validation: INVALID_REQUEST naming the field), and
the ledger enforces the balance's in the same statement that adds the credit. README "Limits".
"""

from __future__ import annotations

__all__ = [
    "MAX_COMPLETION_CHOICES",
    "MAX_COMPUTE_UNITS",
    "MAX_CREDITED_MICRO_USD",
    "MAX_CREDIT_MICRO_USD",
    "MAX_OUTPUT_TOKENS",
    "MAX_PRICE_MICRO_USD",
]

#: One credit: at most 10^12 micro-USD (1,000,000 USD).
MAX_CREDIT_MICRO_USD = 10**12
#: A balance's credited total (sum of all its credits): at most 2^62 micro-USD.
MAX_CREDITED_MICRO_USD = 2**62
#: `max_tokens` / `max_completion_tokens` of one choice: at most 2^20 (1,048,576) tokens.
MAX_OUTPUT_TOKENS = 2**20
#: `n` of a chat or text completion.
MAX_COMPLETION_CHOICES = 128
#: Compute units of one stack: at most 10^12 tokens.
MAX_COMPUTE_UNITS = 10**12
#: Every price (micro-USD per million tokens, or per image): at most 10^10 (10,000 USD).
MAX_PRICE_MICRO_USD = 10**10
