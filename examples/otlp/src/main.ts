import { PGlite } from '@electric-sql/pglite';
import { WorkspaceSimulator } from '@agentconn/example-demo';
import { parseCommand, startExporter } from '@agentconn/exporter';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { startOtlpReceiver } from './receiver.js';

const NAME = 'coderd_agents_first_connection_seconds';

// A receiver on loopback stands in for an OpenTelemetry Collector (point --otlp-endpoint at yours).
const receiver = await startOtlpReceiver(Number(process.env['OTLP_PORT'] ?? 4318));
const db = createPgliteDb(new PGlite());
await migrateToLatest(db);
const simulator = new WorkspaceSimulator(db, { historyWorkspaces: 80 });
await simulator.populate();

const command = parseCommand(
  ['--otlp-endpoint', receiver.url, '--interval', '5s', '--backfill', 'all',
    '--leader-election', 'false', '--listen', '127.0.0.1:0', '--log-level', 'error'],
  {},
  { db },
);
if (command.kind !== 'run') throw new Error('unexpected command');
const exporter = await startExporter({ config: command.config });
simulator.start();
process.stdout.write(`pushing OTLP/HTTP every 5 s to ${receiver.url}; Ctrl-C stops\n`);

let seen = 0;
const report = setInterval(() => {
  const latest = [...receiver.metrics].reverse().find((m) => m.name === NAME);
  if (latest === undefined || receiver.metrics.length === seen) return;
  seen = receiver.metrics.length;
  const count = latest.histogramPoints.reduce((n, p) => n + p.count, 0);
  process.stdout.write(
    `received ${NAME} (unit ${latest.unit}, ${latest.histogramPoints.length} series, ${count} first connections, bounds ${latest.histogramPoints[0]?.explicitBounds.join(',') ?? '-'})\n`,
  );
}, 1000);

const stop = () => {
  clearInterval(report);
  void (async () => {
    await simulator.stop();
    await exporter.stop();
    await db.destroy();
    await receiver.close();
    process.exit(0);
  })();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
