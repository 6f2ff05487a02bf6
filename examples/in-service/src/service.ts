import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { AgentConnectionTracker, agentconnViews, observableGaugesAsDelta, type Logger } from '@agentconn/core';

/** The labels Coder #24355 keeps for the event-driven metric. */
const LABELS = ['template_name', 'agent_name'] as const;

export interface AgentServiceOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly logger?: Logger;
  /** Connection timeout for agents created without `connection_timeout_seconds`. Default 0: none. */
  readonly connectionTimeoutMs?: number;
}

export interface AgentService {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A stand-in for a control plane: `POST /agents/{id}/created` is what it calls when it creates an
 * agent (the wait starts, and its timeout timer), `POST /agents/{id}/connected` when an agent
 * connects; the first call per agent observes `coderd_agents_first_connection_seconds`. The awaiting
 * gauges and the timeouts counter come from the same tracker. It has its
 * own MeterProvider with its own metrics (requests by route) next to ours, served on `/metrics`.
 */
export async function startAgentService(options: AgentServiceOptions = {}): Promise<AgentService> {
  // Observable gauges as deltas: a label set with no waiting agent left leaves /metrics instead of keeping its last value.
  const prometheus = observableGaugesAsDelta(new PrometheusExporter({ preventServerStart: true }));
  const meterProvider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'agent-service-example' }),
    readers: [prometheus],
    views: agentconnViews({ labels: [...LABELS] }),
  });
  const meter = meterProvider.getMeter('agent-service-example');
  const requests = meter.createCounter('agent_service_http_requests', { description: 'HTTP requests by route and status.' });
  const tracker = new AgentConnectionTracker({
    meterProvider,
    labels: [...LABELS],
    ...(options.logger !== undefined && { logger: options.logger }),
    ...(options.connectionTimeoutMs !== undefined && { connectionTimeoutMs: options.connectionTimeoutMs }),
  });

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<string> => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    if (request.method === 'GET' && path === '/metrics') {
      prometheus.getMetricsRequestHandler(request, response);
      return 'metrics';
    }
    const route = /^\/agents\/([^/]+)\/(created|connected)$/.exec(path);
    if (request.method === 'POST' && route) {
      const agentId = decodeURIComponent(route[1] ?? '');
      const body = await readJson(request);
      if (typeof body !== 'object' || body === null) {
        send(response, 400, { error: 'body must be a JSON object' });
        return route[2] ?? 'other';
      }
      const fields = body as Record<string, unknown>;
      const text = (key: string) => (typeof fields[key] === 'string' ? (fields[key] as string) : undefined);
      const labels = {
        template_name: text('template_name') ?? '',
        agent_name: text('agent_name') ?? '',
        username: text('username') ?? '',
        workspace_name: text('workspace_name') ?? '',
      };
      // A connection of an agent created through /created needs no fields; any other one needs these.
      const needed = route[2] === 'created' || !tracker.isAwaiting(agentId) ? ['template_name', 'agent_name'] : [];
      const missing = needed.filter((k) => text(k) === undefined);
      if (missing.length > 0 && !(route[2] === 'connected' && text('created_at') === undefined)) {
        send(response, 400, { error: `missing string field(s): ${missing.join(', ')}` });
        return route[2] ?? 'other';
      }
      if (route[2] === 'created') {
        const timeout = fields['connection_timeout_seconds'];
        const createdAt = text('created_at');
        tracker.created({
          agentId,
          labels,
          ...(createdAt !== undefined && { createdAt }),
          ...(typeof timeout === 'number' && { connectionTimeoutMs: timeout * 1000 }),
        });
        send(response, 200, { awaiting: tracker.isAwaiting(agentId) });
        return 'created';
      }
      const createdAt = text('created_at');
      const outcome = tracker.connected({
        agentId,
        connectedAt: text('first_connected_at') ?? new Date(),
        labels,
        ...(createdAt !== undefined && { createdAt }),
      });
      if (outcome === 'unknown_agent') {
        send(response, 400, { error: 'missing string field(s): created_at, template_name, agent_name (agent not created through /created)' });
        return 'connected';
      }
      send(response, outcome === 'invalid' ? 400 : 200, { outcome });
      return 'connected';
    }
    send(response, 404, { error: 'not found' });
    return 'other';
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).then(
      (route) => requests.add(1, { route, status: String(response.statusCode) }),
      (error: unknown) => {
        send(response, 400, { error: error instanceof Error ? error.message : String(error) });
        requests.add(1, { route: 'error', status: '400' });
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      tracker.destroy();
      await meterProvider.shutdown();
    },
  };
}

function send(response: ServerResponse, status: number, body: unknown): void {
  if (response.headersSent) return;
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(`${JSON.stringify(body)}\n`);
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new Error('body is not valid JSON');
  }
}
