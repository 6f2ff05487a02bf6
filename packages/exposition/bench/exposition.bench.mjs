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
//
// `exemplars`: the recorder of @agentconn/core (three first connections per series, so exemplars on three
// bucket lines of each) and our reader with its exemplar store; one child, scraped in rotation as the Prometheus
// text format and as OpenMetrics with exemplars (the order alternating per run), so both rows share the data,
// the heap and the machine's moment.
import { execFile, fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, get } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);
const VARIANTS = ['ours', 'exemplars', 'otel', 'prom-client'];
const OPENMETRICS_ACCEPT = 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5';

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
    // Coder PR #24179's four labels (one series per workspace), not the default two.
    views: [core.firstConnectionView({ labels: [...core.LABEL_KEYS], cardinalityLimit: series + 10 })],
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

/** Three first connections per series (a workspace rebuilt twice), in different buckets. */
async function startExemplars(series) {
  const { MeterProvider } = await import('@opentelemetry/sdk-metrics');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const core = await import('@agentconn/core');
  const { createMetricsServer, FastPrometheusReader } = await import('../dist/index.js');
  let recorder;
  const reader = new FastPrometheusReader({
    exemplars: { histogramExemplars: (name, attributes) => recorder.exemplars.histogramExemplars(name, attributes) },
  });
  const options = { labels: [...core.LABEL_KEYS], cardinalityLimit: series + 10 };
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'agentconn-bench' }),
    views: [core.firstConnectionView(options)],
    readers: [reader],
  });
  recorder = new core.FirstConnectionRecorder({ meterProvider: provider, ...options });
  const base = Date.parse('2026-11-25T00:00:00Z');
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < series; i++) {
      const created = base + round * 86_400_000 + i;
      const seconds = (valueFor(i) * (round + 1) + round * 37) % 4000;
      recorder.record({
        agentId: `${String(round).padStart(8, '0')}-0000-4000-8000-${String(i).padStart(12, '0')}`,
        createdAt: new Date(created),
        firstConnectedAt: new Date(created + Math.round(seconds * 1000)),
        labels: labelsFor(i),
      });
    }
  }
  const server = await createMetricsServer({ reader, port: 0 });
  return server.port;
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
  const port =
    variant === 'prom-client' ? await startPromClient(series) : variant === 'exemplars' ? await startExemplars(series) : await startOtel(variant, series);
  globalThis.gc?.();
  const rssAfterSetup = process.memoryUsage().rss;
  process.send({ port, rssAfterSetup });
  process.on('message', (message) => {
    if (message !== 'report') return;
    // maxRSS is in KiB: the high-water mark of the whole child, setup and scrapes.
    process.send({ peakRss: process.resourceUsage().maxRSS * 1024 }, () => process.exit(0));
  });
}

function scrapeWithCurl(port, accept) {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '-o', '/dev/null', '-H', `Accept: ${accept ?? '*/*'}`, '-w', '%{http_code} %{time_total} %{time_starttransfer} %{size_download}', `http://127.0.0.1:${port}/metrics`],
      (error, stdout) => {
        if (error) return reject(error);
        const [code, total, ttfb, size] = stdout.trim().split(' ');
        if (code !== '200') return reject(new Error(`status ${code}`));
        resolve({ ms: Number(total) * 1000, ttfbMs: Number(ttfb) * 1000, bytes: Number(size) });
      },
    );
  });
}

function scrape(port, client, accept) {
  if (client === 'curl') return scrapeWithCurl(port, accept);
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const headers = accept === undefined ? {} : { accept };
    const req = get({ host: '127.0.0.1', port, path: '/metrics', agent: false, headers }, (res) => {
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
  // `exemplars` scrapes one child in two formats, in rotation; the others in one.
  const formats = variant === 'exemplars' ? [['exemplars:text', undefined], ['exemplars:openmetrics', OPENMETRICS_ACCEPT]] : [[variant, undefined]];
  for (const [, accept] of formats) await scrape(port, client, accept); // warm-up: JIT, first collect
  const samples = formats.map(() => []);
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? formats.map((_, k) => k) : formats.map((_, k) => formats.length - 1 - k);
    for (const k of order) samples[k].push(await scrape(port, client, formats[k][1]));
  }
  proc.send('report');
  const { peakRss } = await next();
  return formats.map(([name], k) => ({
    variant: name,
    series,
    client,
    runs,
    medianMs: median(samples[k].map((s) => s.ms)),
    minMs: Math.min(...samples[k].map((s) => s.ms)),
    maxMs: Math.max(...samples[k].map((s) => s.ms)),
    medianTtfbMs: median(samples[k].map((s) => s.ttfbMs)),
    bodyBytes: samples[k][0].bytes,
    rssAfterSetupBytes: rssAfterSetup,
    peakRssBytes: peakRss,
  }));
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
      const fast = variant === 'ours' || variant === 'exemplars';
      const runs = series >= 100_000 && !fast ? Math.min(3, Number(values.runs)) : Number(values.runs);
      for (const result of await measure(variant, series, runs, values['node-arg'], values.client)) {
        results.push(result);
        process.stderr.write(`${result.variant} ${series}: ${result.medianMs.toFixed(1)} ms\n`);
      }
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
  const ratios = sizes.flatMap((series) => {
    const text = results.find((r) => r.series === series && r.variant === 'exemplars:text');
    const om = results.find((r) => r.series === series && r.variant === 'exemplars:openmetrics');
    return text && om ? [`${series}: ×${(om.medianMs / text.medianMs).toFixed(2)}`] : [];
  });
  if (ratios.length > 0) lines.push('', `OpenMetrics with exemplars / Prometheus text, same child, in rotation: ${ratios.join(', ')}`);
  console.log(lines.join('\n'));
  console.log('\n```json\n' + JSON.stringify(results, null, 2) + '\n```');
  if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2) + '\n');
}

await main();
