"""Secret-looking samples the masking and log tests share (made up: none is a real credential)."""

TOKEN_HEX = "3f9c1e7a5b2d8046e1c3a9f7b5d20486c4e2a0f8b6d41357"
TOKEN = f"ib_mcp_{TOKEN_HEX}"
BEARER_VALUE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaSJ9.Qk9x-7vT_2mZ"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
KEY_BODY = ["MIIEowIBAAKCAQEAx7QzWvKp3Lq9", "q9Vt3Lw8Zr2Kp5NcYt6Rb0Hs4Jd", "Gm1Xf8Uc2Ve7Sa9Pk3Lo6Ni5Mh4T"]
RSA_KEY = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *KEY_BODY, "-----END RSA PRIVATE KEY-----"])
MASKED_RSA_KEY = "\n".join(
    ["-----BEGIN RSA PRIVATE KEY-----", *["[MASKED:private-key]"] * 3, "-----END RSA PRIVATE KEY-----"]
)
