"""The bottom layer: concepts every other part shares, each defined once here.

`ids` (UUID ids), `tokens` (the InfraBox MCP token form and its fingerprint), `masking` (secrets in any
text), `terminal` (terminal-safe text: no escape sequence or control character survives), `timestamps`
(clocks and RFC 3339), `states` (job and test states), `actions` (what InfraBox would accept on a job) and
`logtext` (tailing and grepping CI logs). Nothing here reads configuration, speaks
MCP, decides policy or sends a request.
"""
