// The MCP TypeScript SDK v2 (`@modelcontextprotocol/client`): the 2025-11-25 handshake ('legacy') or the
// stateless 2026-07-28 era (pinned: `server/discover` must offer it), over Streamable HTTP or SSE.
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

/* global SDK_V2_VERSION */ // set by build.mjs from the installed package
export const label = `@modelcontextprotocol/client ${SDK_V2_VERSION}`;
export const eras = ['2025-11-25', '2026-07-28'];

export async function connect({ endpoint, transport, headers, era }) {
  const options = { requestInit: { headers } };
  const wire =
    transport === 'sse'
      ? new SSEClientTransport(new URL(endpoint), options)
      : new StreamableHTTPClientTransport(new URL(endpoint), options);
  const mode = era === '2026-07-28' ? { pin: '2026-07-28' } : 'legacy';
  const client = new Client(
    { name: 'mcp-ci-tools-browser-chat', version: '0.1.0' },
    { versionNegotiation: { mode } },
  );
  await client.connect(wire);
  return { client, protocolVersion: client.getNegotiatedProtocolVersion() };
}
