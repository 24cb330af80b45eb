"""InfraBox ids: UUIDs in the 8-4-4-4-12 hex form, the only form that may reach a URL path."""

from __future__ import annotations

import re
import uuid
from typing import TypeGuard

__all__ = ["UUID_PATTERN", "canonical_uuid", "is_uuid"]

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(UUID_PATTERN)


def is_uuid(value: object) -> TypeGuard[str]:
    """Whether `value` is a string in the 8-4-4-4-12 hex form (no braces, urn: prefix or bare hex)."""
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


def canonical_uuid(value: object) -> str | None:
    """`value` as a lower-case 8-4-4-4-12 UUID string, or None when it is not one."""
    return str(uuid.UUID(value)) if is_uuid(value) else None
