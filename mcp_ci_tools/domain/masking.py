"""Secrets in text: one set of patterns, used for CI logs, InfraBox's messages, errors and the audit.

Each secret found is replaced by `[MASKED:<kind>]`:

- `infrabox-token`: `ib_mcp_` and 16 or more letters or digits, or fewer when the text ends inside it
  (a log cut by InfraBox can end there);
- `bearer`: the value after the word Bearer, any case (the word stays);
- `private-key`: every non-blank line between PEM private key BEGIN and END markers, which stay; a BEGIN
  without an END masks to the end of the text, an END without a BEGIN from its start;
- `aws-access-key-id`: AKIA/ASIA and 16 more characters;
- `url-password`: the password in `scheme://user:password@host` (the user may be empty).

Newlines are kept, so line numbers survive masking, and masking masked text changes nothing.
"""

from __future__ import annotations

import re

from mcp_ci_tools.domain.tokens import TOKEN_PREFIX

__all__ = ["Span", "describe_value", "mask", "mask_secrets", "mask_with_spans", "starts_in_key"]

_TOKEN = re.compile(rf"{TOKEN_PREFIX}[0-9A-Za-z]+")
_TOKEN_MIN_CHARS = 16
# Starting with the literal word (boundary checked behind it) keeps re's fast prefix scan on 50 MB.
_BEARER = re.compile(r"(?i)bearer(?<!\w......)[ \t]+([^\s'\"`<>()\[\]{},;]+)")
_AWS_KEY_ID = re.compile(r"A[KS]IA[A-Z0-9]{16}")
# The literal "://" keeps it fast.
_URL_PASSWORD = re.compile(r"://[^\s/:@'\"]{0,256}:([^\s/@'\"]{1,256})@")
_KEY_MARKER = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_KEY_MARKER_REACH = 60
_PRIVATE_KEY = "private-key"
_PRIVATE_KEY_MASK = "[MASKED:private-key]"

Span = tuple[int, int]


def mask_secrets(text: str) -> tuple[str, int]:
    """`text` with every secret masked, and how many were masked."""
    masked, secrets = mask_with_spans(text, starts_in_key=starts_in_key(text, 0))
    return masked, len(secrets)


def mask(text: str) -> str:
    """`text` with every secret masked."""
    return mask_secrets(text)[0]


def describe_value(value: object, limit: int = 64) -> str:
    """A short, secret-free rendering of a rejected value, safe for error messages and the audit log."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    if value == "":
        return "an empty string"
    shown = mask(value)
    if len(shown) > limit:
        return f"a {len(value)}-character string starting {shown[:24]!r}"
    return repr(shown)


def mask_with_spans(text: str, *, starts_in_key: bool) -> tuple[str, list[Span]]:
    """Masked text and the span of each masked secret in it.

    `starts_in_key` says that `text` begins inside a private key's body (a piece cut from a longer
    text: see `starts_in_key()`).
    """
    pieces: list[str] = []
    secrets: list[Span] = []
    position = 0
    length = 0
    for start, end, kind in _secret_regions(text, starts_in_key):
        pieces.append(text[position:start])
        length += start - position
        original = text[start:end]
        replacement = _masked_key_body(original) if kind == _PRIVATE_KEY else f"[MASKED:{kind}]"
        if replacement != original:
            secrets.append((length, length + len(replacement)))
        pieces.append(replacement)
        length += len(replacement)
        position = end
    if not secrets:
        return text, []
    pieces.append(text[position:])
    return "".join(pieces), secrets


def starts_in_key(text: str, position: int) -> bool:
    """Whether `position` (0 or a line start) lies inside a private key block of the whole `text`."""
    search_end = position
    while (hit := text.rfind("PRIVATE KEY", 0, search_end)) >= 0:
        for marker in _KEY_MARKER.finditer(text, max(0, hit - _KEY_MARKER_REACH), hit + _KEY_MARKER_REACH):
            if marker.start() <= hit < marker.end():
                return marker.group(1) == "BEGIN"
        search_end = hit
    # A log cut by the server can start inside a key: its first marker is then an END.
    first = _KEY_MARKER.search(text, position)
    return first is not None and first.group(1) == "END"


def _secret_regions(text: str, starts_in_key: bool) -> list[tuple[int, int, str]]:
    """Sorted, non-overlapping (start, end, kind) regions of `text` to replace."""
    regions: list[tuple[int, int, str]] = []
    inside_key = starts_in_key
    body_start = 0
    for marker in _KEY_MARKER.finditer(text):
        if marker.group(1) == "BEGIN" and not inside_key:
            inside_key = True
            body_start = marker.end()
        elif marker.group(1) == "END" and inside_key:
            inside_key = False
            regions.append((body_start, marker.start(), _PRIVATE_KEY))
    if inside_key:
        regions.append((body_start, len(text), _PRIVATE_KEY))

    for token in _TOKEN.finditer(text):
        if token.end() - token.start() - len(TOKEN_PREFIX) >= _TOKEN_MIN_CHARS or token.end() == len(text):
            regions.append((token.start(), token.end(), "infrabox-token"))
    for bearer in _BEARER.finditer(text):
        regions.append((bearer.start(1), bearer.end(1), "bearer"))
    for key_id in _AWS_KEY_ID.finditer(text):
        regions.append((key_id.start(), key_id.end(), "aws-access-key-id"))
    for credentials in _URL_PASSWORD.finditer(text):
        regions.append((credentials.start(1), credentials.end(1), "url-password"))

    merged: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(regions, key=lambda region: (region[0], -region[1])):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end, merged[-1][2])
            continue
        merged.append((start, end, kind))
    return merged


def _masked_key_body(body: str) -> str:
    return "\n".join(_PRIVATE_KEY_MASK if segment.strip() else segment for segment in body.split("\n"))
