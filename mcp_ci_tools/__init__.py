"""mcp-ci-tools: an MCP server that lets LLM agents control InfraBox builds and jobs safely."""

__all__ = ["__version__"]

__version__ = "0.1.0"
