import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MetricsEndpoint } from '@agentconn/exposition';
import type { ReadinessState } from '../readiness.js';

export interface WebStatus {
  readonly version: string;
  /** True while this process observes (holds the leader lock, or runs without leader election). */
  readonly leader: boolean;
  readonly leaderElection: boolean;
  /** Who leads (`this process`, or the other process's description), once known. */
  readonly leaderDescription?: string | undefined;
  readonly readiness: ReadinessState;
}

const TEXT = 'text/plain; charset=utf-8';

function pathOf(url: string | undefined): string {
  const path = url ?? '/';
  const query = path.indexOf('?');
  return query === -1 ? path : path.slice(0, query);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * `/` (a landing page), `/healthz` (200 while the process serves) and `/readyz` (200 once a poll succeeded within
 * the last few intervals, else 503 with the reason) in front of the metrics endpoint; every other path goes to it
 * (which answers 404 off its path). GET and HEAD only: other methods get 405.
 */
export function withStatusPages(metrics: MetricsEndpoint, status: () => WebStatus): MetricsEndpoint {
  const handleMetricsRequest = (request: IncomingMessage, response: ServerResponse): void => {
    const path = pathOf(request.url);
    if (path !== '/' && path !== '/healthz' && path !== '/readyz') {
      metrics.handleMetricsRequest(request, response);
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': TEXT }).end('Method Not Allowed\n');
      return;
    }
    const head = request.method === 'HEAD';
    if (path === '/healthz') {
      response.writeHead(200, { 'Content-Type': TEXT, 'Cache-Control': 'no-store' }).end(head ? undefined : 'ok\n');
      return;
    }
    const current = status();
    if (path === '/readyz') {
      const code = current.readiness.ready ? 200 : 503;
      const body = `${current.readiness.ready ? 'ready' : 'not ready'}: ${current.readiness.reason}\n`;
      response.writeHead(code, { 'Content-Type': TEXT, 'Cache-Control': 'no-store' }).end(head ? undefined : body);
      return;
    }
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(head ? undefined : landingPage(metrics.endpoint, current));
  };
  return { endpoint: metrics.endpoint, handleMetricsRequest };
}

function landingPage(metricsPath: string, status: WebStatus): string {
  const { readiness } = status;
  const role = !status.leaderElection ? 'observing (leader election off)' : status.leader ? 'leader (observing)' : 'follower (not observing)';
  const lastOk = readiness.lastOkMs === undefined ? 'none yet' : new Date(readiness.lastOkMs).toISOString();
  const rows: Array<[string, string]> = [
    ['version', status.version],
    ['role', role],
    ...(status.leaderElection ? [['leader', status.leaderDescription ?? 'not known yet'] as [string, string]] : []),
    ['ready', `${readiness.ready ? 'yes' : 'no'}: ${readiness.reason}`],
    ['last successful poll', lastOk],
  ];
  if (readiness.lastError !== undefined) rows.push(['last error', readiness.lastError]);
  return [
    '<!doctype html>',
    '<html><head><meta charset="utf-8"><title>agentconn exporter</title></head><body>',
    '<h1>agentconn exporter</h1>',
    '<p>Time from workspace agent creation to its first connection, as <code>coderd_agents_first_connection_seconds</code>.</p>',
    `<p><a href="${escapeHtml(metricsPath)}">Metrics</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></p>`,
    '<table>',
    ...rows.map(([key, value]) => `<tr><th align="left">${escapeHtml(key)}</th><td>${escapeHtml(value)}</td></tr>`),
    '</table>',
    '</body></html>',
    '',
  ].join('\n');
}
