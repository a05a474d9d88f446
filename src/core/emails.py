"""The one canonical form of an email address, used wherever an email is stored or looked up.

NFKC then case folding (and NFKC again, as Unicode's NFKC_Casefold does), after trimming: full-width
letters, ligatures and compatibility forms become their plain letters, `ß` and `SS` fold together,
and `Ada@Example.com`, full-width `ada@example.com` and `ada@example.com` are one account whether it came
through Register, Login, the admin API or the command line. Characters that are different letters
stay different: `İ` folds to `i` + U+0307 (a dotted i), not to `i`.
"""

from __future__ import annotations

import unicodedata

__all__ = ["canonical_email"]


def canonical_email(email: str) -> str:
    """`email` trimmed, NFKC-normalized and case-folded (idempotent)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email.strip()).casefold())
