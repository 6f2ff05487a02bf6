/**
 * The metrics tables of the READMEs, made from the metric definitions of `@agentconn/core`, and a way to see which
 * instruments a piece of the product really creates. `test/metric-docs.test.ts` uses both; run it with
 * `AGENTCONN_UPDATE_README=1` to rewrite the tables.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { prometheusName, type MetricDefinition, type MetricType } from '@agentconn/core';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/** An instrument as it was created: its name, the Prometheus type its kind maps to, and its options. */
export interface CreatedInstrument {
  readonly name: string;
  readonly type: MetricType;
  readonly description: string | undefined;
  readonly unit: string | undefined;
}

/** Every `Meter` method that creates an instrument, with the Prometheus type of what it creates. */
const CREATE_METHODS: Readonly<Record<string, MetricType>> = {
  createCounter: 'counter',
  createObservableCounter: 'counter',
  createHistogram: 'histogram',
  createGauge: 'gauge',
  createObservableGauge: 'gauge',
  createUpDownCounter: 'gauge',
  createObservableUpDownCounter: 'gauge',
};

/**
 * Runs `body` while every Meter of every sdk-metrics `MeterProvider` in this process (also one built inside the
 * exporter) reports the instruments created on it. Returns them in the order they were created.
 */
export async function instrumentsCreatedBy(body: () => Promise<void>): Promise<CreatedInstrument[]> {
  const created: CreatedInstrument[] = [];
  const getMeter = MeterProvider.prototype.getMeter;
  MeterProvider.prototype.getMeter = function recordingMeter(this: MeterProvider, ...args: Parameters<MeterProvider['getMeter']>) {
    const meter = getMeter.apply(this, args);
    return new Proxy(meter, {
      get(target, key) {
        const value: unknown = Reflect.get(target, key, target);
        if (typeof value !== 'function') return value;
        const type = typeof key === 'string' ? CREATE_METHODS[key] : undefined;
        if (type === undefined) return value.bind(target);
        return (name: string, options?: { description?: string; unit?: string }) => {
          created.push({ name, type, description: options?.description, unit: options?.unit });
          return value.call(target, name, options);
        };
      },
    });
  };
  try {
    await body();
  } finally {
    MeterProvider.prototype.getMeter = getMeter;
  }
  return created;
}

const code = (text: string): string => `\`${text}\``;

function labelsCell(definition: MetricDefinition): string {
  if (definition.labels === 'series') return 'series labels';
  return Object.entries(definition.labels)
    .map(([key, values]) => (values.length === 0 ? code(key) : `${code(key)}: ${values.map(code).join(', ')}`))
    .join('; ');
}

/** A Markdown table of the given metrics: Prometheus name, type, unit, labels and HELP text. */
export function metricsTableMarkdown(definitions: readonly MetricDefinition[]): string {
  const rows = definitions.map(
    (d) => `| ${code(prometheusName(d))} | ${d.type} | ${code(d.unit)} | ${labelsCell(d)} | ${d.description.replaceAll('|', '\\|')} |`,
  );
  return ['| metric | type | unit | labels | description |', '|---|---|---|---|---|', ...rows].join('\n');
}

const TABLE = /(<!-- metrics:begin[^>]*-->\n)([\s\S]*?)\n?(<!-- metrics:end -->)/;

/** The metrics table between the README's `metrics:begin` and `metrics:end` markers; undefined without them. */
export function readmeMetricsTable(path: string): string | undefined {
  return TABLE.exec(readFileSync(path, 'utf8'))?.[2];
}

/** Puts `table` between the README's markers (they must be there). */
export function writeReadmeMetricsTable(path: string, table: string): void {
  const readme = readFileSync(path, 'utf8');
  if (!TABLE.test(readme)) throw new Error(`${path} has no <!-- metrics:begin --> … <!-- metrics:end --> markers`);
  writeFileSync(path, readme.replace(TABLE, (_, begin: string, _old: string, end: string) => `${begin}${table}\n${end}`));
}
