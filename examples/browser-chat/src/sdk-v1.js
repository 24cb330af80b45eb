// The MCP TypeScript SDK v1 (`@modelcontextprotocol/sdk`): it speaks the 2025-11-25 handshake only
// (`initialize`, then a session), over Streamable HTTP or the fetch-based SSE transport.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

/* global SDK_V1_VERSION */ // set by build.mjs from the installed package
export const label = `@modelcontextprotocol/sdk ${SDK_V1_VERSION}`;
export const eras = ['2025-11-25'];

/** Connects one client over one transport ('streamable-http' or 'sse'); returns the client and the protocol version. */
export async function connect({ endpoint, transport, headers }) {
  const options = { requestInit: { headers } };
  const wire =
    transport === 'sse'
      ? new SSEClientTransport(new URL(endpoint), options)
      : new StreamableHTTPClientTransport(new URL(endpoint), options);
  let protocolVersion;
  const setProtocolVersion = wire.setProtocolVersion?.bind(wire);
  wire.setProtocolVersion = (version) => {
    protocolVersion = version;
    setProtocolVersion?.(version);
  };
  const client = new Client({ name: 'mcp-ci-tools-browser-chat', version: '0.1.0' });
  await client.connect(wire);
  return { client, protocolVersion };
}
