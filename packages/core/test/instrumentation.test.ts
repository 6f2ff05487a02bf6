import { readFileSync } from 'node:fs';
import { metrics as otelMetrics } from '@opentelemetry/api';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { afterEach, describe, expect, it } from 'vitest';
import { firstConnectionView, INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION } from '../src/index.js';
import { FirstConnectionInstrumentation } from '../src/instrumentation.js';
import { samples } from '@agentconn/test-support/exposition-parser';
import { agent, createTestMetrics, type TestMetrics } from './helpers.js';

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

  it('creates no instruments, not even on the global provider, while enabled is false', async () => {
    metrics = createTestMetrics();
    otelMetrics.setGlobalMeterProvider(metrics.meterProvider);
    try {
      const instrumentation = new FirstConnectionInstrumentation({ enabled: false });
      expect(instrumentation.isEnabled()).toBe(false);
      expect(instrumentation.recorder).toBeUndefined();
      expect(instrumentation.recordFirstConnection(agent())).toBe('disabled');
      const text = await metrics.text();
      expect(text).not.toContain('coderd_agents_first_connection_seconds');
      expect(text).not.toContain('agentconn_');
      // Enabling later creates them on the provider of the moment.
      instrumentation.enable();
      expect(instrumentation.recordFirstConnection(agent())).toBe('observed');
      expect([...samples(await metrics.text(), 'coderd_agents_first_connection_seconds_count').values()]).toEqual([1]);
    } finally {
      otelMetrics.disable();
    }
  });

  it('honours enabled in setConfig and applies new options with new instruments', async () => {
    metrics = createTestMetrics([firstConnectionView({ labels: ['template_name'] })]);
    const instrumentation = new FirstConnectionInstrumentation();
    instrumentation.setMeterProvider(metrics.meterProvider);
    instrumentation.setConfig({ enabled: false });
    expect(instrumentation.isEnabled()).toBe(false);
    expect(instrumentation.getConfig().enabled).toBe(false);
    expect(instrumentation.recordFirstConnection(agent())).toBe('disabled');

    // Without `enabled` the state stays as it is.
    instrumentation.setConfig({ labels: ['template_name'] });
    expect(instrumentation.isEnabled()).toBe(false);
    expect(instrumentation.recordFirstConnection(agent())).toBe('disabled');

    instrumentation.setConfig({ enabled: true, labels: ['template_name'] });
    expect(instrumentation.isEnabled()).toBe(true);
    expect(instrumentation.recordFirstConnection(agent())).toBe('observed');
    const s = samples(await metrics.text(), 'coderd_agents_first_connection_seconds_count');
    expect([...s]).toEqual([['coderd_agents_first_connection_seconds_count{template_name="docker"}', 1]]);

    expect(() => instrumentation.setConfig({ cardinalityLimit: 1 })).toThrow(/cardinalityLimit/);
    expect(instrumentation.getConfig().labels).toEqual(['template_name']);
  });

  it('names itself after the package, with the version of its package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
    const instrumentation = new FirstConnectionInstrumentation({ enabled: false });
    expect(instrumentation.instrumentationName).toBe(pkg.name);
    expect(instrumentation.instrumentationVersion).toBe(pkg.version);
    expect([INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION]).toEqual([pkg.name, pkg.version]);
  });
});
