import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The parts of an OTLP/JSON histogram data point this example reads. */
export interface OtlpHistogramPoint {
  readonly attributes: Record<string, string>;
  readonly count: number;
  readonly sum: number;
  readonly bucketCounts: number[];
  readonly explicitBounds: number[];
}

export interface OtlpMetric {
  readonly scope: string;
  readonly name: string;
  readonly unit: string;
  readonly description: string;
  /** 1 delta, 2 cumulative (histograms only). */
  readonly temporality: number | undefined;
  readonly histogramPoints: OtlpHistogramPoint[];
}

export interface OtlpReceiver {
  /** e.g. `http://127.0.0.1:4318/v1/metrics` */
  readonly url: string;
  /** Every metric of every request received, oldest first. */
  readonly metrics: OtlpMetric[];
  /** Resolves when a request carried a metric matching the predicate. */
  waitFor(predicate: (metric: OtlpMetric) => boolean, timeoutMs?: number): Promise<OtlpMetric>;
  close(): Promise<void>;
}

interface JsonAnyValue { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean }
interface JsonHistogramPoint {
  attributes?: Array<{ key: string; value: JsonAnyValue }>;
  count?: string | number;
  sum?: number;
  bucketCounts?: Array<string | number>;
  explicitBounds?: number[];
}
interface JsonMetric {
  name: string;
  unit?: string;
  description?: string;
  histogram?: { dataPoints?: JsonHistogramPoint[]; aggregationTemporality?: number };
}
interface JsonRequest {
  resourceMetrics?: Array<{ scopeMetrics?: Array<{ scope?: { name?: string }; metrics?: JsonMetric[] }> }>;
}

/** A minimal OTLP/HTTP metrics receiver for JSON payloads (what `@opentelemetry/exporter-metrics-otlp-http` sends), on loopback. */
export async function startOtlpReceiver(port = 0, host = '127.0.0.1'): Promise<OtlpReceiver> {
  const metrics: OtlpMetric[] = [];
  const waiters = new Set<() => void>();
  const server: Server = createServer((request, response) => {
    if (request.method !== 'POST' || request.url !== '/v1/metrics') {
      response.writeHead(404).end();
      return;
    }
    if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
      response.writeHead(415, { 'content-type': 'text/plain' }).end('only OTLP/JSON is understood here\n');
      return;
    }
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as JsonRequest;
        for (const resource of body.resourceMetrics ?? []) {
          for (const scope of resource.scopeMetrics ?? []) {
            for (const metric of scope.metrics ?? []) metrics.push(toMetric(scope.scope?.name ?? '', metric));
          }
        }
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        for (const wake of waiters) wake();
      } catch (error) {
        response.writeHead(400, { 'content-type': 'text/plain' }).end(`bad OTLP/JSON: ${String(error)}\n`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${host}:${address.port}/v1/metrics`,
    metrics,
    waitFor(predicate, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = [...metrics].reverse().find(predicate);
          if (found === undefined) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching metric received within ${timeoutMs} ms (${metrics.length} metrics received)`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function toMetric(scope: string, metric: JsonMetric): OtlpMetric {
  return {
    scope,
    name: metric.name,
    unit: metric.unit ?? '',
    description: metric.description ?? '',
    temporality: metric.histogram?.aggregationTemporality,
    histogramPoints: (metric.histogram?.dataPoints ?? []).map((p) => ({
      attributes: Object.fromEntries((p.attributes ?? []).map((a) => [a.key, String(a.value.stringValue ?? a.value.intValue ?? a.value.doubleValue ?? a.value.boolValue ?? '')])),
      count: Number(p.count ?? 0),
      sum: p.sum ?? 0,
      bucketCounts: (p.bucketCounts ?? []).map(Number),
      explicitBounds: p.explicitBounds ?? [],
    })),
  };
}
