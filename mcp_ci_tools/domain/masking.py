"""Secrets in text: one set of patterns, used for CI logs, InfraBox's messages, errors and the audit.

Each secret found is replaced by `[MASKED:<kind>]`:

- `infrabox-token`: `ib_mcp_` and 16 or more letters or digits, or fewer when the text ends inside it
  (a log cut by InfraBox can end there);
- `bearer`: the value after the word Bearer, any case (the word stays);
- `private-key`: every non-blank line between PEM private key BEGIN and END markers, which stay; a BEGIN
  without an END masks to the end of the text, an END without a BEGIN from its start;
- `aws-access-key-id`: AKIA/ASIA and 16 more characters;
- `url-password`: the password in `scheme://user:password@host` (the user may be empty).
- the service tokens CI logs leak, each by its literal prefix and shape (see `KINDS` for the full list):
  GitHub (`github-pat` ghp_, `github-oauth` gho_, `github-user-to-server` ghu_, `github-server-to-server`
  ghs_, `github-refresh` ghr_, `github-fine-grained-pat` github_pat_), `gitlab-token` (glpat- and the other
  gl*- prefixes), `slack-token` (xoxa/b/e/p/r/s-), `slack-webhook` (the path after hooks.slack.com/),
  `npm-token`, `stripe-key`, `google-api-key`, `sendgrid-api-key`, `pypi-token`, `dockerhub-pat`,
  `vault-token`, `openai-api-key`, `anthropic-api-key`, `jwt` (eyJ….eyJ….signature);
- `aws-secret-access-key`: the value of `aws_secret_access_key` / `AWS_SECRET_ACCESS_KEY` (= or :);
- `azure-storage-key`: the value of `AccountKey=` in a connection string;
- `basic-auth`: the credentials after `Authorization: Basic`;
- `cli-password`: the value after `--password` / `--password=`, and after `-p` in a `docker login` line;
- `secret-assignment`: the value of `password`, `passwd`, `secret`, `token` or `api_key` / `api-key`
  assigned with `=` or `:` (also as the end of a longer name: `DB_PASSWORD=`, `"github_token": "…"`); the
  name stays, and a value of asterisks only (`password: ********`) is left alone.

Newlines are kept, so line numbers survive masking, and masking masked text changes nothing.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from mcp_ci_tools.domain.tokens import TOKEN_PREFIX

__all__ = ["KINDS", "Span", "describe_value", "mask", "mask_secrets", "mask_with_spans", "starts_in_key"]

_TOKEN = re.compile(rf"{TOKEN_PREFIX}[0-9A-Za-z]+")
_TOKEN_MIN_CHARS = 16
# Starting with the literal word (boundary checked behind it) keeps re's fast prefix scan on 50 MB.
_BEARER_PATTERN = r"bearer(?<!\w......)[ \t]+([^\s'\"`<>()\[\]{},;]+)"
_BEARER = re.compile(_BEARER_PATTERN, re.IGNORECASE)
_LOWER_BEARER = re.compile(_BEARER_PATTERN)  # on the lowercased text, where the literal prefix scan works
_AWS_KEY_ID = re.compile(r"A[KS]IA[A-Z0-9]{16}")
# The literal "://" keeps it fast.
_URL_PASSWORD = re.compile(r"://[^\s/:@'\"]{0,256}:([^\s/@'\"]{1,256})@")
# Service tokens, one pass per literal prefix (re's prefix scan is what keeps 50 MB fast): each named group
# is a kind (its name with - for _); the whole match is masked.
_W = r"[0-9A-Za-z_\-]"
_PREFIXED: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"gh(?:(?P<github_pat>p_[0-9A-Za-z]{36,255})|(?P<github_oauth>o_[0-9A-Za-z]{36,255})"
        r"|(?P<github_user_to_server>u_[0-9A-Za-z]{36,255})|(?P<github_server_to_server>s_[0-9A-Za-z]{36,255})"
        r"|(?P<github_refresh>r_[0-9A-Za-z]{36,255}))",
        r"github_pat_(?P<github_fine_grained_pat>[0-9A-Za-z_]{22,255})",
        rf"gl(?P<gitlab_token>(?:pat|dt|rt|ptt|soat|cbt|imt|agent|ffct|oas|ft|cf)-{_W}{{20,255}})",
        r"xox(?P<slack_token>[abeprs]-[0-9A-Za-z\-]{10,255})",
        r"npm_(?P<npm_token>[0-9A-Za-z]{36,255})",
        rf"sk(?:(?P<stripe_key>_(?:live|test|prod)_[0-9A-Za-z]{{10,255}})"
        rf"|-(?:(?P<anthropic_api_key>ant-[a-z]{{3,8}}\d\d-{_W}{{32,255}})"
        rf"|(?P<openai_api_key>(?:proj-|svcacct-|admin-)?{_W}{{16,255}}T3BlbkFJ{_W}{{16,255}}"
        rf"|(?:proj|svcacct|admin)-{_W}{{40,255}})))",
        r"rk_(?P<stripe_key>(?:live|test|prod)_[0-9A-Za-z]{10,255})",
        rf"AIza(?P<google_api_key>{_W}{{35}})",
        rf"SG\.(?P<sendgrid_api_key>{_W}{{22}}\.{_W}{{43}})",
        rf"pypi-(?P<pypi_token>AgEIcHlwaS5vcmc{_W}{{20,}})",
        rf"dckr_pat_(?P<dockerhub_pat>{_W}{{20,255}})",
        rf"hv(?P<vault_token>[sb]\.{_W}{{24,512}})",
        rf"eyJ(?P<jwt>{_W}{{5,}}\.eyJ{_W}{{5,}}\.{_W}*)",
    )
)


def _kind(group: str) -> str:
    return group.replace("_", "-")


# The webhook's host stays; its secret path is masked.
_SLACK_WEBHOOK = re.compile(r"hooks\.slack\.com/((?:services|workflows|triggers)/[0-9A-Za-z+/_\-]{20,255})")
# Values after a name, in any case: (kind, pattern whose group "value" is masked, needles). The patterns are
# lowercase and run on the lowercased text (the same length when the text is ASCII), where re's literal
# prefix scan works; otherwise they run case-insensitively on the text itself.
# A value is not masked when it is asterisks only, a $VAR or %VAR% reference, a short number, or a literal
# such as true/none; after a colon, a bare lowercase word ("token: expired") is prose, not a value.
_END = r"(?:[\s\"',;]|$)"
_VALUE = (
    rf"(?P<quote>[\"'])?(?P<value>(?!\[masked:|-----|[$%])(?!(?:\*+|\d{{1,6}}|true|false|none|null|nil|undefined){_END})"
    r"(?(quote)[^\"'\n]{1,512}|[^\s\"'`,;&<>(){}\[\]]{1,512}))"
)
_NAMED = rf"[\"']?[ \t]*(?:=[ \t]*|:[ \t]*(?=[\"']|(?![a-z]+{_END})))"
_ASSIGNED: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern), re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("aws-secret-access-key", rf"aws_secret_access_key{_NAMED}{_VALUE}"),
        ("azure-storage-key", rf"accountkey={_VALUE}"),
        ("basic-auth", rf"authorization[\"']?[ \t]*[:=][ \t]*[\"']?basic[ \t]+{_VALUE}"),
        ("cli-password", rf"--password(?:=|[ \t]+){_VALUE}"),
        ("secret-assignment", rf"passw(?:or)?d{_NAMED}{_VALUE}"),
        ("secret-assignment", rf"secret{_NAMED}{_VALUE}"),
        ("secret-assignment", rf"token{_NAMED}{_VALUE}"),
        ("secret-assignment", rf"api[_\-]?key{_NAMED}{_VALUE}"),
    )
)
# `-p <password>` counts only on a `docker login` line, and there every `-p` does.
_DOCKER_LOGIN = re.compile(r"docker(?:-compose)?[ \t]+login\b[^\n]*")
_DASH_P = re.compile(rf"[ \t]-p[ \t]*{_VALUE}")
# Every kind of secret masked, each as `[MASKED:<kind>]`.
KINDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            "infrabox-token",
            "bearer",
            "private-key",
            "aws-access-key-id",
            "url-password",
            *(_kind(name) for pattern in _PREFIXED for name in pattern.groupindex),
            "slack-webhook",
            *(kind for kind, _, _ in _ASSIGNED),
        ]
    )
)
# A literal every pattern above needs (lowercase: it runs where the lowercase patterns run). A short text with
# none of them holds no secret, and one search answers that in a microsecond instead of some 30 scans. Long
# texts (logs) skip it: an alternation defeats re's literal prefix scan, and there most texts hold a needle.
_NEEDLES = re.compile(
    "|".join(
        (
            re.escape(TOKEN_PREFIX.lower()),
            "bearer",
            "akia|asia",
            "://",
            "gh[pousr]_|github_pat_|gl[a-z]{2,5}-|xox[abeprs]-|npm_|sk[_-]|rk_|aiza|sg\\.|pypi-|dckr_pat_|hv[sb]\\.|eyj",
            "hooks\\.slack\\.com/",
            "aws_secret_access_key|accountkey=|authorization|--password|passw(?:or)?d|secret|token|api[_\\-]?key",
            "docker",
            "-----",
        )
    )
)
_NEEDLES_ANY_CASE = re.compile(_NEEDLES.pattern, re.IGNORECASE)
_GATED_CHARS = 4096
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
    if not starts_in_key and len(text) <= _GATED_CHARS and not _may_hold_a_secret(text):
        return []
    regions: list[tuple[int, int, str]] = []
    inside_key = starts_in_key
    body_start = 0
    markers = list(_KEY_MARKER.finditer(text))
    for marker in markers:
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
    lowered = text.lower()
    same_positions = len(lowered) == len(text)  # then every character was lowered to exactly one
    for bearer in _LOWER_BEARER.finditer(lowered) if same_positions else _BEARER.finditer(text):
        regions.append((bearer.start(1), bearer.end(1), "bearer"))
    for key_id in _AWS_KEY_ID.finditer(text):
        regions.append((key_id.start(), key_id.end(), "aws-access-key-id"))
    for credentials in _URL_PASSWORD.finditer(text):
        regions.append((credentials.start(1), credentials.end(1), "url-password"))
    for pattern in _PREFIXED:
        for found in pattern.finditer(text):
            regions.append((found.start(), found.end(), _kind(found.lastgroup or "")))
    for hook in _SLACK_WEBHOOK.finditer(text):
        regions.append((hook.start(1), hook.end(1), "slack-webhook"))
    for kind, lower_pattern, any_case in _ASSIGNED:
        found_in = lower_pattern.finditer(lowered) if same_positions else any_case.finditer(text)
        regions.extend((found.start("value"), found.end("value"), kind) for found in found_in)
    # Lowercase patterns: on the lowercased text, or on an ASCII-lowercased copy of the same length.
    docker_text = lowered if same_positions else _ascii_lower(text)
    for line in _DOCKER_LOGIN.finditer(docker_text):
        regions.extend(
            (found.start("value"), found.end("value"), "cli-password")
            for found in _DASH_P.finditer(docker_text, line.start(), line.end())
        )

    if markers:
        regions = _around_markers(regions, [(marker.start(), marker.end()) for marker in markers])
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(regions, key=lambda region: (region[0], -region[1])):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end, merged[-1][2])
            continue
        merged.append((start, end, kind))
    return merged


def _may_hold_a_secret(text: str) -> bool:
    lowered = text.lower()
    if len(lowered) == len(text):
        return _NEEDLES.search(lowered) is not None
    # As the patterns do there: case-insensitive on the text, and lowercase on its ASCII-lowercased copy.
    return _NEEDLES_ANY_CASE.search(text) is not None or _NEEDLES.search(_ascii_lower(text)) is not None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _around_markers(regions: list[tuple[int, int, str]], markers: list[Span]) -> list[tuple[int, int, str]]:
    """Other regions cut short before any key marker they reach: masking never breaks a marker, so a second
    pass sees the same keys."""
    starts = [start for start, _ in markers]
    kept: list[tuple[int, int, str]] = []
    for start, end, kind in regions:
        if kind == _PRIVATE_KEY:
            kept.append((start, end, kind))
            continue
        index = bisect_right(starts, start) - 1
        if index >= 0 and markers[index][1] > start:
            continue  # begins inside a marker
        following = index + 1
        if following < len(markers) and starts[following] < end:
            end = starts[following]
        kept.append((start, end, kind))
    return kept


def _masked_key_body(body: str) -> str:
    return "\n".join(_PRIVATE_KEY_MASK if segment.strip() else segment for segment in body.split("\n"))
