import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { FirstConnectionRecorder, firstConnectionView, type LabelKey, type Logger } from '@agentconn/core';

export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly fields: Readonly<Record<string, unknown>> | undefined;
}

/** A logger that keeps what it is told, for assertions. */
export function memoryLogger(): Logger & { readonly lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log =
    (level: LogLine['level']) =>
    (message: string, fields?: Readonly<Record<string, unknown>>): void => {
      lines.push({ level, message, fields });
    };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/**
 * The real pipeline a user gets: a MeterProvider with the core's View and the real PrometheusExporter,
 * served over HTTP by its own request handler on a loopback port.
 */
export class PrometheusHarness {
  readonly exporter = new PrometheusExporter({ preventServerStart: true });
  readonly meterProvider: MeterProvider;
  readonly logger = memoryLogger();
  readonly recorder: FirstConnectionRecorder;
  readonly #server: Server = createServer((req, res) => this.exporter.getMetricsRequestHandler(req, res));

  /** `labels`: the series labels (default the core's, Coder #24355's two). */
  constructor(options: { readonly labels?: readonly LabelKey[] } = {}) {
    const metric = options.labels === undefined ? {} : { labels: options.labels };
    this.meterProvider = new MeterProvider({ readers: [this.exporter], views: [firstConnectionView(metric)] });
    this.recorder = new FirstConnectionRecorder({ meterProvider: this.meterProvider, logger: this.logger, ...metric });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  /** GET /metrics, as Prometheus would. */
  async scrape(): Promise<string> {
    const { port } = this.#server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!response.ok) throw new Error(`scrape failed: HTTP ${response.status}`);
    return response.text();
  }

  async shutdown(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.meterProvider.shutdown();
  }
}

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses Prometheus text exposition samples, undoing the label value escapes (`\\`, `\"`, `\n`). */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue;
    const nameEnd = line.search(/[{ ]/);
    const name = line.slice(0, nameEnd);
    const labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        const eq = line.indexOf('=', i);
        const key = line.slice(i, eq);
        if (line[eq + 1] !== '"') throw new Error(`bad label in line: ${line}`);
        let j = eq + 2;
        let value = '';
        while (line[j] !== '"') {
          if (line[j] === '\\') {
            const next = line[j + 1];
            value += next === 'n' ? '\n' : next;
            j += 2;
          } else {
            value += line[j];
            j++;
          }
          if (j >= line.length) throw new Error(`unterminated label value in line: ${line}`);
        }
        labels[key] = value;
        i = j + 1;
        if (line[i] === ',') i++;
      }
      i++;
    }
    const value = Number(line.slice(i).trim().split(' ')[0]);
    samples.push({ name, labels, value });
  }
  return samples;
}

export interface HistogramSeries {
  readonly count: number;
  readonly sum: number;
  /** Cumulative count per `le` bound, as the text has it (`+Inf` included). */
  readonly buckets: ReadonlyMap<string, number>;
}

/** The series of one histogram family whose labels include `match`, keyed by the given label. */
export function histogramBy(
  samples: readonly Sample[],
  family: string,
  key: string,
): Map<string, HistogramSeries> {
  const series = new Map<string, { count: number; sum: number; buckets: Map<string, number> }>();
  const get = (labels: Readonly<Record<string, string>>) => {
    const id = labels[key];
    if (id === undefined) throw new Error(`sample of ${family} without label ${key}`);
    let entry = series.get(id);
    if (entry === undefined) {
      entry = { count: 0, sum: 0, buckets: new Map() };
      series.set(id, entry);
    }
    return entry;
  };
  for (const s of samples) {
    if (s.name === `${family}_bucket`) {
      const entry = get(s.labels);
      const le = s.labels.le!;
      entry.buckets.set(le, (entry.buckets.get(le) ?? 0) + s.value);
    } else if (s.name === `${family}_count`) {
      get(s.labels).count += s.value;
    } else if (s.name === `${family}_sum`) {
      get(s.labels).sum += s.value;
    }
  }
  return series;
}
