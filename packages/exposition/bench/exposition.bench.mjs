#!/usr/bin/env node
// /metrics scrape benchmark: our FastPrometheusReader against @opentelemetry/exporter-prometheus 0.301 and
// prom-client, on the first-connection histogram (4 labels: 20 templates, unique users and workspaces).
//
// Run after `pnpm exec tsc -b`:   node packages/exposition/bench/exposition.bench.mjs [--sizes 1000,10000,100000]
//                                 [--variants ours,otel,prom-client] [--runs 7] [--client node|curl] [--json out.json]
//
// Each variant and size runs in its own child process (so peak RSS is that variant's alone). The child
// records the data and serves /metrics on a loopback port; the parent scrapes it over HTTP (one warm-up, then
// `runs` timed scrapes, time from request to last body byte) and reads the child's peak RSS at the end.
import { execFile, fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, get } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);
const VARIANTS = ['ours', 'otel', 'prom-client'];

function labelsFor(i) {
  return {
    template_name: `template-${i % 20}`,
    agent_name: 'main',
    username: `user-${i}`,
    workspace_name: `workspace-${i}`,
  };
}

function valueFor(i) {
  return (i * 7.31) % 4000; // spreads samples over all buckets
}

async function startOtel(variant, series) {
  const { MeterProvider } = await import('@opentelemetry/sdk-metrics');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const core = await import('@agentconn/core');
  const { createMetricsServer, FastPrometheusReader } = await import('../dist/index.js');
  const { PrometheusExporter } = await import('@opentelemetry/exporter-prometheus');
  const reader =
    variant === 'ours' ? new FastPrometheusReader() : new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'agentconn-bench' }),
    views: [core.firstConnectionView({ cardinalityLimit: series + 10 })],
    readers: [reader],
  });
  const histogram = provider
    .getMeter(core.INSTRUMENTATION_SCOPE, core.INSTRUMENTATION_VERSION)
    .createHistogram(core.FIRST_CONNECTION_METRIC_NAME, {
      description: core.FIRST_CONNECTION_METRIC_DESCRIPTION,
      unit: core.FIRST_CONNECTION_METRIC_UNIT,
    });
  for (let i = 0; i < series; i++) histogram.record(valueFor(i), labelsFor(i));
  if (variant === 'ours') {
    const server = await createMetricsServer({ reader, port: 0 });
    return server.port;
  }
  // The official exporter's own handler; its built-in server cannot take port 0.
  return listen(createServer((req, res) => reader.getMetricsRequestHandler(req, res)));
}

async function startPromClient(series) {
  const { Histogram, Registry } = await import('prom-client');
  const core = await import('@agentconn/core');
  const registry = new Registry();
  const histogram = new Histogram({
    name: core.FIRST_CONNECTION_METRIC_NAME,
    help: core.FIRST_CONNECTION_METRIC_DESCRIPTION,
    labelNames: [...core.LABEL_KEYS],
    buckets: [...core.FIRST_CONNECTION_BUCKET_BOUNDARIES],
    registers: [registry],
  });
  for (let i = 0; i < series; i++) histogram.observe(labelsFor(i), valueFor(i));
  return listen(
    createServer(async (_req, res) => {
      const body = await registry.metrics();
      res.setHeader('Content-Type', registry.contentType);
      res.end(body);
    }),
  );
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

async function child(variant, series) {
  const port = variant === 'prom-client' ? await startPromClient(series) : await startOtel(variant, series);
  globalThis.gc?.();
  const rssAfterSetup = process.memoryUsage().rss;
  process.send({ port, rssAfterSetup });
  process.on('message', (message) => {
    if (message !== 'report') return;
    // maxRSS is in KiB: the high-water mark of the whole child, setup and scrapes.
    process.send({ peakRss: process.resourceUsage().maxRSS * 1024 }, () => process.exit(0));
  });
}

function scrapeWithCurl(port) {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total} %{time_starttransfer} %{size_download}', `http://127.0.0.1:${port}/metrics`],
      (error, stdout) => {
        if (error) return reject(error);
        const [code, total, ttfb, size] = stdout.trim().split(' ');
        if (code !== '200') return reject(new Error(`status ${code}`));
        resolve({ ms: Number(total) * 1000, ttfbMs: Number(ttfb) * 1000, bytes: Number(size) });
      },
    );
  });
}

function scrape(port, client) {
  if (client === 'curl') return scrapeWithCurl(port);
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let bytes = 0;
      let firstByte;
      res.on('data', (part) => {
        firstByte ??= process.hrtime.bigint();
        bytes += part.length;
      });
      res.on('end', () => {
        const end = process.hrtime.bigint();
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        else resolve({ ms: Number(end - start) / 1e6, ttfbMs: Number(firstByte - start) / 1e6, bytes });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function measure(variant, series, runs, nodeArgs, client) {
  const proc = fork(SELF, ['--child', variant, '--series', String(series)], {
    execArgv: ['--expose-gc', ...nodeArgs],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = () =>
    new Promise((resolve, reject) => {
      proc.once('message', resolve);
      proc.once('exit', (code) => reject(new Error(`${variant} child exited with ${code}`)));
    });
  const { port, rssAfterSetup } = await next();
  await scrape(port, client); // warm-up: JIT, first collect
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await scrape(port, client));
  proc.send('report');
  const { peakRss } = await next();
  return {
    variant,
    series,
    client,
    runs,
    medianMs: median(samples.map((s) => s.ms)),
    minMs: Math.min(...samples.map((s) => s.ms)),
    maxMs: Math.max(...samples.map((s) => s.ms)),
    medianTtfbMs: median(samples.map((s) => s.ttfbMs)),
    bodyBytes: samples[0].bytes,
    rssAfterSetupBytes: rssAfterSetup,
    peakRssBytes: peakRss,
  };
}

const mb = (bytes) => (bytes / 1e6).toFixed(1);

async function main() {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      series: { type: 'string' },
      sizes: { type: 'string', default: '1000,10000,100000' },
      variants: { type: 'string', default: VARIANTS.join(',') },
      runs: { type: 'string', default: '7' },
      json: { type: 'string' },
      // node: Node's http client reads the body (itself ~2x slower than the servers at 100k series);
      // curl: closer to Prometheus' Go scraper.
      client: { type: 'string', default: 'node' },
      'node-arg': { type: 'string', multiple: true, default: [] },
    },
  });
  if (values.child) return child(values.child, Number(values.series));

  const sizes = values.sizes.split(',').map(Number);
  const variants = values.variants.split(',');
  const results = [];
  for (const series of sizes) {
    for (const variant of variants) {
      // The slow variants at 100k take ~10 s a scrape: fewer runs there.
      const runs = series >= 100_000 && variant !== 'ours' ? Math.min(3, Number(values.runs)) : Number(values.runs);
      const result = await measure(variant, series, runs, values['node-arg'], values.client);
      results.push(result);
      process.stderr.write(`${variant} ${series}: ${result.medianMs.toFixed(1)} ms\n`);
    }
  }
  const lines = [
    `Node ${process.version}, client ${values.client}, ${new Date().toISOString()}`,
    '',
    '| series | variant | client | scrape median (ms) | min–max (ms) | first byte (ms) | body (MB) | RSS after setup (MB) | peak RSS (MB) | runs |',
    '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.series} | ${r.variant} | ${r.client} | ${r.medianMs.toFixed(1)} | ${r.minMs.toFixed(0)}–${r.maxMs.toFixed(0)} | ` +
        `${r.medianTtfbMs.toFixed(1)} | ${mb(r.bodyBytes)} | ${mb(r.rssAfterSetupBytes)} | ${mb(r.peakRssBytes)} | ${r.runs} |`,
    ),
  ];
  console.log(lines.join('\n'));
  console.log('\n```json\n' + JSON.stringify(results, null, 2) + '\n```');
  if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2) + '\n');
}

await main();
