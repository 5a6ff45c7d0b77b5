"""Token strength: whether a bearer token chosen by the operator (ADMIN_TOKEN, …) is guessable.

Length alone lets `aaaaaaaaaaaaaaaa` through. The estimate here is the token's Shannon entropy
(bits per character of its own character distribution, times its length): a crude upper bound of
what an attacker must guess, which is enough to refuse the obviously weak (repeated characters,
a short pattern repeated). It cannot tell a random token from a memorable phrase; the README asks
for a generated one.
"""

from __future__ import annotations

import math
from collections import Counter

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_BITS = 40.0
GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def estimated_bits(token: str) -> float:
    """Shannon entropy of `token`'s characters times its length, in bits."""
    if not token:
        return 0.0
    counts = Counter(token)
    total = len(token)
    per_char = -sum(n / total * math.log2(n / total) for n in counts.values())
    return per_char * total


def repeated_pattern(token: str) -> bool:
    """True when `token` is a shorter string repeated (`abcabcabcabc`, `abab…`)."""
    # The smallest period of a string is found in its doubled form (a classic string identity).
    return len(token) > 1 and (token + token).find(token, 1) < len(token)


def token_problem(name: str, token: str) -> str | None:
    """The configuration problem with `token` as `name`, or None when it is acceptable."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"{name}: must be at least {MIN_TOKEN_LENGTH} characters"
    if repeated_pattern(token) or estimated_bits(token) < MIN_TOKEN_BITS:
        return (
            f"{name}: too predictable (repeated characters or a repeated pattern); "
            f"use a random value, e.g. {GENERATE_HINT}"
        )
    return None
