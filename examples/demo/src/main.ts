import { PGlite } from '@electric-sql/pglite';
import { parseCommand, ConfigError, startExporter } from '@agentconn/exporter';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { WorkspaceSimulator } from './simulator.js';

const PROMQL =
  'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))';

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  // Extra flags pass through to the exporter, e.g. `pnpm demo --listen 127.0.0.1:9999 --labels template_name`.
  const db = createPgliteDb(new PGlite());
  let command;
  try {
    command = parseCommand(
      [
        '--interval', '5s',
        '--backfill', 'all',
        '--leader-election', 'false',
        '--log-level', 'warn',
        ...process.argv.slice(2),
      ],
      { AGENTCONN_LISTEN: process.env['AGENTCONN_LISTEN'] ?? '' },
      { db },
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`demo: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  if (command.kind !== 'run') {
    say('usage: pnpm demo [exporter flags, e.g. --listen 127.0.0.1:9999 --labels template_name,agent_name]');
    return;
  }

  say('agentconn demo: embedded PostgreSQL (PGlite) with simulated Coder workspaces');
  const started = performance.now();
  await migrateToLatest(db);
  const simulator = new WorkspaceSimulator(db);
  await simulator.populate();
  say(`  schema migrated and ${simulator.stats.workspacesCreated} workspaces of the last hour created in ${Math.round(performance.now() - started)} ms`);

  const exporter = await startExporter({ config: command.config });
  simulator.start();

  say();
  say(`  metrics:    ${exporter.metricsUrl}`);
  say(`  try:        curl -s ${exporter.metricsUrl} | grep coderd_agents_first_connection_seconds_count`);
  say(`  Prometheus: scrape ${new URL(exporter.metricsUrl).host} (examples/prometheus/prometheus.yml) and query`);
  say(`              ${PROMQL}`);
  say();
  say('  New workspaces appear every 2 s; their agents connect seconds to minutes later, a few never,');
  say('  a few with a skewed clock (dropped and counted in agentconn_samples_dropped_total). Ctrl-C stops.');
  say();

  const report = setInterval(() => {
    const s = simulator.stats;
    say(
      `  [${new Date().toISOString().slice(11, 19)}] workspaces ${s.workspacesCreated}, live connections ${s.agentsConnected}, ` +
        `skewed ${s.skewedConnections}, agents waiting ${s.pendingAgents}`,
    );
  }, 15_000);
  report.unref();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    say(`\n  ${signal}: stopping`);
    clearInterval(report);
    void (async () => {
      await simulator.stop();
      await exporter.stop();
      await db.destroy();
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
