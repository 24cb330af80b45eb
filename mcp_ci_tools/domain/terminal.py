"""Terminal-safe text: CI- and InfraBox-written text with nothing a terminal would execute.

A client that prints a tool result to a terminal runs whatever escape sequences it holds: colours, OSC 8
hyperlinks, OSC 52 clipboard writes, screen clears, cursor moves. `terminal_safe` removes every ANSI
escape sequence (CSI, OSC, DCS, SOS, PM, APC and the two-character escapes, in their 7-bit ESC and 8-bit
C1 forms), and renders every other control character visibly:

- C0 controls and DEL become their Unicode control pictures (`\\x07` → `␇`, `\\x1b` → `␛`, DEL → `␡`);
- C1 controls (U+0080..U+009F), the bidirectional overrides, embeddings and isolates (U+202A..U+202E,
  U+2066..U+2069, and the marks U+200E, U+200F, U+061C), which can reorder or hide text, and the Unicode
  line and paragraph separators become `<U+XXXX>`;
- `\\n` and `\\t` stay. A `\\r` before `\\n` or at the end of the text is dropped (CRLF line ends); any
  other `\\r` (a progress line overwriting itself) is shown as `␍`, so nothing is overwritten and no
  secret can be half-hidden by it.

No sequence spans a line, so newlines, and with them line numbers, are kept; an escape cut off at a line
end is removed up to that end. The result is stable: `terminal_safe(terminal_safe(t)) == terminal_safe(t)`.
Mask secrets after this (`masking.mask`), so a secret split by a colour code is whole again when masked.
"""

from __future__ import annotations

import re

__all__ = ["terminal_safe"]

_ST = r"(?:\x07|\x1b\\|\x9c)"  # BEL or String Terminator ends OSC and the other string sequences
_CSI = r"[0-?]*[ -/]*[@-~]?"  # colours, cursor moves, clear screen
_STRING = rf"[^\x07\x1b\x9c\n]*{_ST}?"  # OSC (hyperlinks, clipboard), DCS, SOS, PM, APC: up to the terminator
_TWO_CHAR = r"[ -/]*[0-~]"  # ESC c (reset), ESC 7/8, ESC ( B, ...
# One leading character class (re scans for it fast); the lookbehinds then tell the 7- and 8-bit forms apart.
_ESCAPES = re.compile(
    rf"[\x1b\x90\x98\x9b\x9d-\x9f](?:(?<=\x1b)\[{_CSI}|(?<=\x9b){_CSI}|(?<=\x1b)[\]PX^_]{_STRING}"
    rf"|(?<=[\x90\x98\x9d-\x9f]){_STRING}|(?<=\x1b){_TWO_CHAR})"
)
# ASCII text has no C1 controls: a literal ESC then starts every sequence, and re's literal scan is faster still.
_ASCII_ESCAPES = re.compile(rf"\x1b(?:\[{_CSI}|[\]PX^_]{_STRING}|{_TWO_CHAR})")
_PRINTABLE_ASCII = bytes([9, 10, *range(0x20, 0x7F)])
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_CONTROLS}]")
_CRLF = re.compile(r"\r+(?=\n|\Z)")


def terminal_safe(text: str) -> str:
    """`text` with ANSI escape sequences removed and every other control character rendered visibly."""
    if text.isascii():
        if not _ascii_controls(text):
            return text
        text = _ASCII_ESCAPES.sub("", text)
        if "\r" in text:
            text = _CRLF.sub("", text)
        return _UNSAFE.sub(_visible, text) if _ascii_controls(text) else text
    if _UNSAFE.search(text) is None:
        return text
    text = _ESCAPES.sub("", text)
    if "\r" in text:
        text = _CRLF.sub("", text)
    return _UNSAFE.sub(_visible, text)


def _ascii_controls(text: str) -> bool:
    # Deleting every printable byte leaves only the controls: a C-speed scan, no regex.
    return bool(text.encode("ascii").translate(None, _PRINTABLE_ASCII))


def _visible(found: re.Match[str]) -> str:
    code = ord(found.group())
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return f"<U+{code:04X}>"
