#!/usr/bin/env node
// Serving under abuse: what one client, or a few, can do to the scraper of a large /metrics.
//
// Run after `pnpm exec tsc -b`:   node packages/exposition/bench/serving.bench.mjs --help
//
// A child process serves N first-connection series (Coder PR #24179's four labels, one series per workspace) with
// our reader and `createMetricsServer`, and answers /healthz as the exporter does. The parent runs two scenarios:
//
// - burst: 50 scrapes at once, from client processes started beforehand (fast readers, as curl or Prometheus
//   are), while the parent asks /healthz every 50 ms: the longest /healthz answer, and the longest the server's
//   event loop was held (`monitorEventLoopDelay`).
// - queued: a health check behind a burst of new connections while large bodies stream. 10 scrapes on keep-alive
//   connections stream their bodies; then 40 scrapes on new connections wait in the accept queue (Node accepts one a
//   turn of its event loop), and a /healthz on a new connection behind them (`test/fixtures/new-connection-burst.mjs`):
//   how long that /healthz took, and how much of what the 10 bodies still had to send went before it was answered.
// - slow readers: `--rounds` rounds; in each, a reader taking 100 KB/s and a fast scrape ask together (so they
//   share a rendering), with renderings shared for 300 ms only, so that each round renders on its own, as
//   scrapes some seconds apart do with the default: the server's RSS after a first scrape, and its peak.
import { fork } from 'node:child_process';
import { get } from 'node:http';
import { connect } from 'node:net';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);
const HELP = `Usage: node packages/exposition/bench/serving.bench.mjs [options]   (after pnpm exec tsc -b)

  --series N        series served, default 100000 (a 262 MB text body)
  --scenarios LIST  burst, queued, slow-readers (default all)
  --clients N       client processes the burst's 50 scrapes come from, default 10
  --rounds N        rounds of the slow-readers scenario, default 10
  --dist DIR        the exposition build to serve (default this package's dist/), e.g. an older checkout's
  --json FILE       also write the results as JSON
  --help            this text
`;

function labelsFor(i) {
  return { template_name: `template-${i % 20}`, agent_name: 'main', username: `user-${i}`, workspace_name: `workspace-${i}` };
}

/** The server: N series, our reader, /healthz beside /metrics; answers questions over IPC. */
async function child(series, dist, readerOptions) {
  const { MeterProvider } = await import('@opentelemetry/sdk-metrics');
  const core = await import('@agentconn/core');
  const { createMetricsServer, FastPrometheusReader } = await import(`${dist}/index.js`);
  const reader = new FastPrometheusReader(readerOptions);
  const provider = new MeterProvider({
    views: [core.firstConnectionView({ labels: [...core.LABEL_KEYS], cardinalityLimit: series + 10 })],
    readers: [reader],
  });
  const histogram = provider.getMeter(core.INSTRUMENTATION_SCOPE).createHistogram(core.FIRST_CONNECTION_METRIC_NAME, { unit: 's' });
  for (let i = 0; i < series; i++) histogram.record((i * 7.31) % 4000, labelsFor(i));
  const endpoint = {
    endpoint: reader.endpoint,
    handleMetricsRequest: (request, response) =>
      request.url === '/healthz' ? response.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n') : reader.handleMetricsRequest(request, response),
  };
  const server = await createMetricsServer({ reader: endpoint, port: 0 });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  process.on('message', (message) => {
    if (message === 'rss') {
      globalThis.gc?.();
      process.send({ rss: process.memoryUsage.rss() });
    } else if (message === 'peak') process.send({ peakRss: process.resourceUsage().maxRSS * 1024 });
    else if (message === 'loop-delay') {
      process.send({ maxMillis: delay.max / 1e6 });
      delay.reset();
    } else if (message === 'exit') server.close().then(() => process.exit(0));
  });
  process.send({ port: server.port });
}

/** A client process: on 'go', `count` scrapes at once over raw sockets; reports the bytes of each. */
function burstClient(port, count) {
  process.send('ready');
  process.once('message', async () => {
    const bytes = await Promise.all(
      Array.from(
        { length: count },
        () =>
          new Promise((resolve) => {
            const socket = connect(port, '127.0.0.1');
            let got = 0;
            socket.on('data', (part) => (got += part.length));
            socket.on('error', () => {});
            socket.on('close', () => resolve(got));
            socket.write('GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n');
          }),
      ),
    );
    process.send(bytes);
    process.disconnect();
  });
}

function startServer(series, dist, readerOptions) {
  const proc = fork(SELF, ['--child', String(series), dist, JSON.stringify(readerOptions)], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = () => new Promise((resolve, reject) => {
    proc.once('message', resolve);
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return next().then(({ port }) => ({
    port,
    url: `http://127.0.0.1:${port}/metrics`,
    ask: (message) => {
      const answer = next();
      proc.send(message);
      return answer;
    },
    stop: () => new Promise((resolve) => {
      proc.once('exit', resolve);
      proc.send('exit');
    }),
  }));
}

/** Status, bytes and milliseconds of one GET. */
function scrape(url) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    get(url, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (part) => (bytes += part.length));
      res.on('end', () => resolve({ status: res.statusCode, bytes, millis: performance.now() - started }));
    }).on('error', reject);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function burst(series, dist, clients) {
  const server = await startServer(series, dist, {});
  await scrape(server.url);
  const procs = await Promise.all(
    Array.from({ length: clients }, () => new Promise((resolve) => {
      const proc = fork(SELF, ['--burst-client', String(server.port), String(50 / clients)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      proc.once('message', () => resolve(proc));
    })),
  );
  await sleep(200);
  await server.ask('loop-delay');
  let done = false;
  const bodies = Promise.all(procs.map((proc) => new Promise((resolve) => {
    proc.once('message', resolve);
    proc.send('go');
  }))).then((all) => {
    done = true;
    return all.flat();
  });
  const healthz = [];
  while (!done) {
    healthz.push((await scrape(`http://127.0.0.1:${server.port}/healthz`)).millis);
    await sleep(50);
  }
  const sizes = await bodies;
  const { maxMillis } = await server.ask('loop-delay');
  await server.stop();
  return {
    scenario: 'burst',
    series,
    clients,
    fullBodies: sizes.filter((bytes) => bytes > 1e6).length,
    healthzAsks: healthz.length,
    healthzMaxMs: Math.max(...healthz),
    healthzMedianMs: median(healthz),
    eventLoopMaxMs: maxMillis,
  };
}

const NEW_CONNECTION_BURST = fileURLToPath(new URL('../test/fixtures/new-connection-burst.mjs', import.meta.url));

async function queued(series, dist) {
  const server = await startServer(series, dist, {});
  const size = (await scrape(server.url)).bytes;
  await server.ask('loop-delay');
  const client = fork(NEW_CONNECTION_BURST, ['10', '40', String(server.port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const report = await new Promise((resolve) => client.once('message', resolve));
  const { maxMillis } = await server.ask('loop-delay');
  await server.stop();
  const total = report.writerBytes.reduce((sum, bytes) => sum + bytes, 0);
  const left = total - report.writerBytesAtQueue;
  return {
    scenario: 'queued',
    series,
    fullBodies: report.writerBytes.filter((bytes) => bytes > size).length,
    healthzStatus: report.status,
    healthzMs: report.probeMillis,
    sentBeforeHealthzMB: (report.writerBytesAtAnswer - report.writerBytesAtQueue) / 1e6,
    sentBeforeHealthzOfLeft: (report.writerBytesAtAnswer - report.writerBytesAtQueue) / left,
    eventLoopMaxMs: maxMillis,
  };
}

async function slowReaders(series, dist, rounds) {
  const server = await startServer(series, dist, { maxConcurrentScrapes: rounds + 10, renderShareMillis: 300 });
  const size = (await scrape(server.url)).bytes;
  const { rss: idleRss } = await server.ask('rss');
  const readers = [];
  const fast = [];
  for (let round = 0; round < rounds; round++) {
    const socket = connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n');
    socket.pause();
    const timer = setInterval(() => {
      for (let taken = 0; taken < 10_000; ) {
        const part = socket.read();
        if (part === null) break;
        taken += part.length;
      }
    }, 100);
    readers.push({ socket, timer });
    fast.push(await scrape(server.url));
    await sleep(500);
  }
  const { peakRss } = await server.ask('peak');
  for (const { socket, timer } of readers) {
    clearInterval(timer);
    socket.destroy();
  }
  await server.stop();
  return {
    scenario: 'slow-readers',
    series,
    rounds,
    bodyBytes: size,
    idleRssMB: idleRss / 1e6,
    peakRssMB: peakRss / 1e6,
    fastScrapes200: fast.filter((reply) => reply.status === 200 && reply.bytes === size).length,
    fastScrapeMedianMs: median(fast.map((reply) => reply.millis)),
  };
}

async function main() {
  if (process.argv[2] === '--child') return child(Number(process.argv[3]), process.argv[4], JSON.parse(process.argv[5]));
  if (process.argv[2] === '--burst-client') return burstClient(Number(process.argv[3]), Number(process.argv[4]));
  const { values } = parseArgs({
    options: {
      series: { type: 'string', default: '100000' },
      scenarios: { type: 'string', default: 'burst,queued,slow-readers' },
      clients: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '10' },
      dist: { type: 'string', default: fileURLToPath(new URL('../dist', import.meta.url)) },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const series = Number(values.series);
  const results = [];
  for (const scenario of values.scenarios.split(',')) {
    const load = loadavg()[0].toFixed(1);
    const result =
      scenario === 'burst'
        ? await burst(series, values.dist, Number(values.clients))
        : scenario === 'queued'
          ? await queued(series, values.dist)
          : await slowReaders(series, values.dist, Number(values.rounds));
    results.push({ ...result, loadAverage: load });
    console.log(JSON.stringify(results.at(-1)));
  }
  if (values.json !== undefined) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(values.json, JSON.stringify(results, null, 2));
  }
}

await main();
