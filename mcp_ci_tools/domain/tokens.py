"""The InfraBox MCP token: its form, and the fingerprint that stands for it everywhere a token may not."""

from __future__ import annotations

import hashlib
import re

__all__ = ["TOKEN_FORM", "TOKEN_PREFIX", "fingerprint", "is_token", "token_hash"]

TOKEN_PREFIX = "ib_mcp_"  # noqa: S105 - the public prefix, not a secret
TOKEN_FORM = f"{TOKEN_PREFIX} followed by 48 lowercase hex digits"
_TOKEN_RE = re.compile(rf"{TOKEN_PREFIX}[0-9a-f]{{48}}")


def is_token(value: str) -> bool:
    """Whether `value` has the form of an InfraBox MCP token (InfraBox alone knows whether it is valid)."""
    return _TOKEN_RE.fullmatch(value) is not None


def token_hash(token: str) -> str:
    """The token's SHA-256 in hex, as InfraBox stores it (`token_hash`)."""
    return hashlib.sha256(token.encode()).hexdigest()


def fingerprint(token: str) -> str:
    """`sha256:` + the first 12 hex digits of `token_hash`: safe to log, audit and show."""
    return "sha256:" + token_hash(token)[:12]
