"""Benchmarks of mcp-ci-tools against the InfraBox sandbox on loopback: `python -m benchmarks [--smoke]`."""
