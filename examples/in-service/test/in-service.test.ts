import { afterEach, describe, expect, it } from 'vitest';
import { startAgentService, type AgentService } from '../src/service.js';

let service: AgentService | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

const silent = { debug() {}, info() {}, warn() {}, error() {} };

async function connect(id: string, body: Record<string, unknown>) {
  const response = await fetch(`${service!.url}/agents/${id}/connected`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as { outcome?: string; error?: string } };
}

describe('in-service example (event-driven, no polling)', () => {
  it('records each first connection once, next to the service\'s own metrics', async () => {
    service = await startAgentService({ logger: silent });
    const base = { template_name: 'docker', agent_name: 'main' };
    expect(await connect('a1', { ...base, created_at: '2026-11-25T10:00:00Z', first_connected_at: '2026-11-25T10:00:45Z' })).toEqual({
      status: 200,
      body: { outcome: 'observed' },
    });
    expect((await connect('a1', { ...base, created_at: '2026-11-25T10:00:00Z', first_connected_at: '2026-11-25T10:00:50Z' })).body.outcome).toBe('duplicate');
    expect((await connect('a2', { ...base, created_at: '2026-11-25T10:00:00Z', first_connected_at: '2026-11-25T10:07:00Z' })).body.outcome).toBe('observed');
    expect((await connect('a3', { ...base, created_at: '2026-11-25T10:00:09Z', first_connected_at: '2026-11-25T10:00:00Z' })).body.outcome).toBe('negative_duration');
    expect((await connect('a4', { template_name: 'docker' })).status).toBe(400);

    const text = await (await fetch(`${service.url}/metrics`)).text();
    const series = 'template_name="docker",agent_name="main"';
    const value = (name: string) => {
      const line = text.split('\n').find((l) => l.startsWith(name) && l.includes(series));
      return line === undefined ? undefined : Number(line.split(' ').pop());
    };
    expect(value('coderd_agents_first_connection_seconds_count')).toBe(2);
    expect(value('coderd_agents_first_connection_seconds_sum')).toBe(465);
    expect(text).toMatch(/coderd_agents_first_connection_seconds_bucket\{[^}]*le="60"\} 1/);
    expect(text).toMatch(/coderd_agents_first_connection_seconds_bucket\{[^}]*le="600"\} 2/);
    expect(text).not.toMatch(/username=/);
    expect(text).toMatch(/agent_service_http_requests_total\{[^}]*route="connected"[^}]*status="200"[^}]*\} 4/);
    expect(text).toMatch(/agentconn_samples_dropped_total\{[^}]*reason="negative_duration"[^}]*\} 1/);
  });
});

describe('in-service example: the agents that wait and the ones that time out', () => {
  async function post(id: string, action: 'created' | 'connected', body: Record<string, unknown>) {
    const response = await fetch(`${service!.url}/agents/${id}/${action}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }
  const value = (text: string, name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes('template_name="docker",agent_name="main"'));
    return line === undefined ? undefined : Number(line.split(' ').pop());
  };

  it('created → awaiting; a timeout counts once; connecting later observes once and the awaiting series leave', async () => {
    service = await startAgentService({ logger: silent });
    const base = { template_name: 'docker', agent_name: 'main' };
    expect(await post('w1', 'created', { ...base, connection_timeout_seconds: 0.05 })).toEqual({ status: 200, body: { awaiting: true } });
    expect((await post('w2', 'created', { ...base })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 150));
    let text = await (await fetch(`${service.url}/metrics`)).text();
    expect(value(text, 'coderd_agents_awaiting_first_connection')).toBe(2);
    expect(value(text, 'coderd_agents_awaiting_first_connection_oldest_seconds')).toBeGreaterThanOrEqual(0.15);
    expect(value(text, 'coderd_agents_first_connection_timeouts_total')).toBe(1);

    expect((await post('w1', 'connected', {})).body).toEqual({ outcome: 'observed' });
    expect((await post('w2', 'connected', {})).body).toEqual({ outcome: 'observed' });
    expect((await post('w1', 'connected', {})).body).toEqual({ outcome: 'duplicate' });
    text = await (await fetch(`${service.url}/metrics`)).text();
    expect(value(text, 'coderd_agents_awaiting_first_connection')).toBeUndefined();
    expect(value(text, 'coderd_agents_awaiting_first_connection_oldest_seconds')).toBeUndefined();
    expect(value(text, 'coderd_agents_first_connection_timeouts_total')).toBe(1);
    expect(value(text, 'coderd_agents_first_connection_seconds_count')).toBe(2);
  });
});
