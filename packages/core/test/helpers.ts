import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider, type ViewOptions } from '@opentelemetry/sdk-metrics';
import type { AgentFirstConnection, LogFields, Logger } from '../src/index.js';

export interface TestMetrics {
  readonly meterProvider: MeterProvider;
  /** The Prometheus text the official exporter would serve right now. */
  text(): Promise<string>;
  shutdown(): Promise<void>;
}

export function createTestMetrics(views: ViewOptions[] = []): TestMetrics {
  const exporter = new PrometheusExporter({ preventServerStart: true });
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

export interface LogRecord {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly fields: LogFields;
}

export function createMemoryLogger(): Logger & { readonly records: LogRecord[] } {
  const records: LogRecord[] = [];
  const log = (level: LogRecord['level']) => (message: string, fields: LogFields = {}) => {
    records.push({ level, message, fields });
  };
  return { records, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/** Sample lines of one family, as `suffix{labels} value` → value, labels without otel_scope_* noise. */
export function samples(text: string, family: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(family)) continue;
    const match = /^(\S+?)(\{.*\})? (\S+)$/.exec(line);
    if (!match) continue;
    const [, name = '', rawLabels = '', value = ''] = match;
    const labels = rawLabels
      .replace(/^\{|\}$/g, '')
      .split(/,(?=[a-z_]+=")/)
      .filter((l) => l.length > 0 && !l.startsWith('otel_scope_'))
      .join(',');
    result.set(`${name}{${labels}}`, Number(value));
  }
  return result;
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
