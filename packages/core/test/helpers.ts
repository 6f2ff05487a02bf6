import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider, type ViewOptions } from '@opentelemetry/sdk-metrics';
import { observableGaugesAsDelta, type AgentFirstConnection } from '../src/index.js';

export interface TestMetrics {
  readonly meterProvider: MeterProvider;
  /** The Prometheus text the official exporter would serve right now. */
  text(): Promise<string>;
  shutdown(): Promise<void>;
}

/**
 * The official exporter, with observable gauges collected as deltas (as the exporter's readers do) unless
 * `cumulativeGauges`: then a label set no longer observed keeps its last value (the SDK's behaviour).
 */
export function createTestMetrics(views: ViewOptions[] = [], options: { cumulativeGauges?: boolean } = {}): TestMetrics {
  const upstream = new PrometheusExporter({ preventServerStart: true });
  const exporter = options.cumulativeGauges === true ? upstream : observableGaugesAsDelta(upstream);
  const meterProvider = new MeterProvider({ readers: [exporter], views });
  const serializer = new PrometheusSerializer();
  return {
    meterProvider,
    async text() {
      const { resourceMetrics, errors } = await exporter.collect();
      if (errors.length > 0) throw new AggregateError(errors, 'collect failed');
      return serializer.serialize(resourceMetrics);
    },
    shutdown: () => meterProvider.shutdown(),
  };
}

let counter = 0;
export function agent(overrides: Partial<AgentFirstConnection> & { readonly delaySeconds?: number } = {}): AgentFirstConnection {
  counter++;
  const created = new Date('2026-11-25T10:00:00.000Z');
  const { delaySeconds = 45, ...rest } = overrides;
  return {
    agentId: `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`,
    createdAt: created,
    firstConnectedAt: new Date(created.getTime() + delaySeconds * 1000),
    labels: { template_name: 'docker', agent_name: 'main', username: 'alice', workspace_name: 'ws-1' },
    ...rest,
  };
}
