import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { afterEach, describe, expect, it } from 'vitest';
import { FirstConnectionInstrumentation, firstConnectionView } from '../src/index.js';
import { agent, createTestMetrics, samples, type TestMetrics } from './helpers.js';

let metrics: TestMetrics | undefined;
afterEach(async () => {
  await metrics?.shutdown();
});

describe('FirstConnectionInstrumentation', () => {
  it('fits registerInstrumentations and records on the MeterProvider it is given', async () => {
    metrics = createTestMetrics([firstConnectionView({ labels: ['template_name', 'agent_name'] })]);
    const instrumentation = new FirstConnectionInstrumentation({ labels: ['template_name', 'agent_name'] });
    const unregister = registerInstrumentations({ instrumentations: [instrumentation], meterProvider: metrics.meterProvider });
    expect(instrumentation.recordFirstConnection(agent({ delaySeconds: 7 }))).toBe('observed');
    const s = samples(await metrics.text(), 'coderd_agents_first_connection_seconds_count');
    expect([...s]).toEqual([['coderd_agents_first_connection_seconds_count{template_name="docker",agent_name="main"}', 1]]);
    unregister();
    expect(instrumentation.getConfig().enabled).toBe(false);
    expect(instrumentation.recordFirstConnection(agent())).toBe('disabled');
  });

  it('rejects bad config at construction', () => {
    expect(() => new FirstConnectionInstrumentation({ labels: ['nope' as never] })).toThrow(/unknown label "nope"/);
  });
});
