"""One made-up sample per secret kind, as CI logs leak them (none is a real credential).

`LEAKS` maps each kind to (a log line, the secret part that must never be shown, the line as masked).
"""

from __future__ import annotations

from tests.secret_samples import AWS_KEY_ID, BEARER_VALUE, TOKEN


def chars(count: int, seed: str = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zC") -> str:
    """`count` letters and digits, the same every time."""
    return (seed * (count // len(seed) + 1))[:count]


GHP = "ghp_" + chars(36)
GHO = "gho_" + chars(36, "Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe")
GHU = "ghu_" + chars(36, "Qq1Ww2Ee3Rr4Tt5Yy6Uu7Ii8Oo9Pp0")
GHS = "ghs_" + chars(36, "Mn8Bv7Cx6Zl5Kj4Hg3Fd2Sa1")
GHR = "ghr_" + chars(36, "Lp0Ok9Ij8Uh7Yg6Tf5Rd4Es3")
GITHUB_PAT = "github_pat_11ABCDEFG0" + chars(12) + "_" + chars(59, "Xk2Lm4Np6Qr8St0Uv2Wx4Yz6")
GLPAT = "glpat-" + chars(20, "x9Yz8Wv7Ut6Sr5Qp4On3")
GLRT = "glrt-" + chars(20, "Ab1Cd2Ef3Gh4Ij5Kl6Mn7")
SLACK_BOT = "xoxb-123456789012-1234567890123-" + chars(24, "Sl4ckT0kenV4lu3")
SLACK_HOOK_PATH = "services/T0ABCDEFG/B0HIJKLMN/" + chars(24, "W3bh00kS3cr3tP4th")
NPM = "npm_" + chars(36, "Np1Mt2Ok3En4Ab5Cd6")
STRIPE = "sk_live_" + chars(24, "St1Ri2Pe3Ke4")
STRIPE_RESTRICTED = "rk_live_" + chars(24, "Re1St2Ri3Ct4")
GOOGLE = "AIzaSy" + chars(33, "Go0Gl3Ap1K3y")
SENDGRID = "SG." + chars(22, "Se1Nd2Gr3Id4") + "." + chars(43, "Ap1Ke2Yv3Al4Ue5")
PYPI = "pypi-AgEIcHlwaS5vcmc" + chars(60, "Py1Pi2To3Ke4N5")
DOCKERHUB = "dckr_pat_" + chars(27, "Do1Ck2Er3Hu4B5")
VAULT = "hvs." + chars(90, "Va1Ul2To3Ke4N5")
ANTHROPIC = "sk-ant-api03-" + chars(93, "An1Th2Ro3Pi4C5")
OPENAI = "sk-proj-" + chars(48, "Op1En2Ai3Ke4Y5")
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJjaSIsInN1YiI6ImRlcGxveSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZURE_KEY = chars(86, "Az1Ur2Es3To4R5") + "=="
BASIC = "ZGVwbG95OmMwcnJlY3QtaDByc2U="
PASSWORD = "Hunter2-s3cret"

# kind: (log line, the secret in it, the line masked)
LEAKS: dict[str, tuple[str, str, str]] = {
    "infrabox-token": (
        f"export INFRABOX_MCP_TOKEN={TOKEN}",
        TOKEN[7:],
        "export INFRABOX_MCP_TOKEN=[MASKED:infrabox-token]",
    ),
    "bearer": (
        f"curl -H 'Authorization: Bearer {BEARER_VALUE}x'",
        BEARER_VALUE,
        "curl -H 'Authorization: Bearer [MASKED:bearer]'",
    ),
    "private-key": (
        "key: -----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "key: -----BEGIN PRIVATE KEY-----[MASKED:private-key]-----END PRIVATE KEY-----",
    ),
    "aws-access-key-id": (
        f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}",
        AWS_KEY_ID[4:],
        "AWS_ACCESS_KEY_ID=[MASKED:aws-access-key-id]",
    ),
    "url-password": (
        "git clone https://ci:Pa55word-url@git.example.com/repo.git",
        "Pa55word-url",
        "git clone https://ci:[MASKED:url-password]@git.example.com/repo.git",
    ),
    "github-pat": (f"remote: using {GHP} for push", GHP[4:], "remote: using [MASKED:github-pat] for push"),
    "github-oauth": (f"oauth {GHO}", GHO[4:], "oauth [MASKED:github-oauth]"),
    "github-user-to-server": (f"ghu: {GHU}", GHU[4:], "ghu: [MASKED:github-user-to-server]"),
    "github-server-to-server": (
        f"app installation {GHS}",
        GHS[4:],
        "app installation [MASKED:github-server-to-server]",
    ),
    "github-refresh": (f"refresh {GHR}.", GHR[4:], "refresh [MASKED:github-refresh]."),
    "github-fine-grained-pat": (f"pat={GITHUB_PAT}", GITHUB_PAT[11:], "pat=[MASKED:github-fine-grained-pat]"),
    "gitlab-token": (
        f"PRIVATE-TOKEN {GLPAT} and {GLRT}",
        GLPAT[6:],
        "PRIVATE-TOKEN [MASKED:gitlab-token] and [MASKED:gitlab-token]",
    ),
    "slack-token": (f"slack client {SLACK_BOT} ok", SLACK_BOT[5:], "slack client [MASKED:slack-token] ok"),
    "slack-webhook": (
        f"POST https://hooks.slack.com/{SLACK_HOOK_PATH} 200",
        SLACK_HOOK_PATH,
        "POST https://hooks.slack.com/[MASKED:slack-webhook] 200",
    ),
    "npm-token": (
        f"//registry.npmjs.org/:_authToken {NPM}",
        NPM[4:],
        "//registry.npmjs.org/:_authToken [MASKED:npm-token]",
    ),
    "stripe-key": (
        f"stripe {STRIPE} {STRIPE_RESTRICTED}",
        STRIPE[8:],
        "stripe [MASKED:stripe-key] [MASKED:stripe-key]",
    ),
    "google-api-key": (f"maps key {GOOGLE}", GOOGLE[4:], "maps key [MASKED:google-api-key]"),
    "sendgrid-api-key": (f"mail via {SENDGRID}", SENDGRID[3:], "mail via [MASKED:sendgrid-api-key]"),
    "pypi-token": (
        f"twine upload -u __token__ -p {PYPI}",
        PYPI[5:],
        "twine upload -u __token__ -p [MASKED:pypi-token]",
    ),
    "dockerhub-pat": (f"hub {DOCKERHUB}", DOCKERHUB[9:], "hub [MASKED:dockerhub-pat]"),
    "vault-token": (f"VAULT_TOKEN {VAULT}", VAULT[4:], "VAULT_TOKEN [MASKED:vault-token]"),
    "anthropic-api-key": (f"key {ANTHROPIC}", ANTHROPIC[7:], "key [MASKED:anthropic-api-key]"),
    "openai-api-key": (f"key {OPENAI}", OPENAI[8:], "key [MASKED:openai-api-key]"),
    "jwt": (f"id_jwt {JWT} issued", JWT[3:], "id_jwt [MASKED:jwt] issued"),
    "aws-secret-access-key": (
        f"aws_secret_access_key = {AWS_SECRET}",
        AWS_SECRET,
        "aws_secret_access_key = [MASKED:aws-secret-access-key]",
    ),
    "azure-storage-key": (
        f"DefaultEndpointsProtocol=https;AccountName=ci;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
        AZURE_KEY,
        "DefaultEndpointsProtocol=https;AccountName=ci;AccountKey=[MASKED:azure-storage-key];"
        "EndpointSuffix=core.windows.net",
    ),
    "basic-auth": (f"> Authorization: Basic {BASIC}", BASIC, "> Authorization: Basic [MASKED:basic-auth]"),
    "cli-password": (
        f"+ docker login -u ci -p {PASSWORD} registry.example.com",
        PASSWORD,
        "+ docker login -u ci -p [MASKED:cli-password] registry.example.com",
    ),
    "secret-assignment": (f"DB_PASSWORD={PASSWORD}", PASSWORD, "DB_PASSWORD=[MASKED:secret-assignment]"),
}
