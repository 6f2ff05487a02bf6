import { PGlite } from '@electric-sql/pglite';
import { parseCommand, ConfigError, startExporter } from '@agentconn/exporter';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { WorkspaceSimulator } from './simulator.js';

const PROMQL =
  'histogram_quantile(0.95, sum(rate(coderd_agents_first_connection_seconds_bucket[1h])) by (le, template_name))';
/** The exemplars of the slow buckets: the latest agents that took 60 s or more, by workspace. */
const SLOW_EXEMPLARS = 'coderd_agents_first_connection_seconds_bucket{le=~"120|300|600|1800|3600|[+]Inf"}';
/** The whole start (`--phases`): P95 of the starts that ended ready, and of each phase, by template. */
const START_PROMQL =
  'histogram_quantile(0.95, sum by (le, template_name) (rate(agentconn_workspace_start_seconds_bucket{outcome="ready"}[1h])))';
const PHASE_PROMQL =
  'histogram_quantile(0.95, sum by (le, template_name, phase) (rate(agentconn_workspace_start_phase_seconds_bucket[1h])))';
const OUTCOMES_PROMQL = 'sum by (outcome, is_prebuild) (agentconn_workspace_start_seconds_count)';
const JQ = `jq -r '.data[].exemplars[] | "\\(.value) s  \\(.labels.workspace_name)  \\(.labels.username)"' | sort -rn | head`;

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
        '--phases', 'true',
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
  say(
    `  schema migrated, ${simulator.stats.workspacesCreated} workspaces and ${simulator.stats.starts} start builds of the last hour ` +
      `created in ${Math.round(performance.now() - started)} ms`,
  );

  const exporter = await startExporter({ config: command.config });
  simulator.start();

  say();
  say(`  metrics:    ${exporter.metricsUrl}`);
  say(`  try:        curl -s ${exporter.metricsUrl} | grep coderd_agents_first_connection_seconds_count`);
  say(`  Prometheus: prometheus --config.file=examples/prometheus/prometheus.yml --enable-feature=exemplar-storage`);
  say(`              (it scrapes ${new URL(exporter.metricsUrl).host}); after two scrapes, a minute at most, this answers`);
  say('              with the P95 in seconds for every template, e.g. {template_name="template-0"} 27.4:');
  say(`  P95 by template:  ${PROMQL}`);
  say(`  slowest recent:   curl -sG http://localhost:9090/api/v1/query_exemplars --data-urlencode 'query=${SLOW_EXEMPLARS}' | ${JQ}`);
  say('                    (seconds, workspace and user of the latest slow first connections)');
  say('  The whole start (--phases), where the time goes:');
  say(`  ready start P95:   ${START_PROMQL}`);
  say(`  phase P95:         ${PHASE_PROMQL}`);
  say(`  starts by outcome: ${OUTCOMES_PROMQL}`);
  say();
  say('  New workspaces appear every 2 s: each waits in the queue, runs Terraform (init, plan, graph, apply),');
  say('  then its agent connects seconds to minutes later and runs its startup scripts. Some builds fail or are');
  say('  canceled, some scripts fail or time out, agents of template-3 time out after 120 s unconnected, and a');
  say('  prebuild pool of template-0 grows every 10 s. A few agents connect with a skewed clock (dropped and');
  say('  counted in agentconn_samples_dropped_total). Ctrl-C stops.');
  say();

  const report = setInterval(() => {
    const s = simulator.stats;
    say(
      `  [${new Date().toISOString().slice(11, 19)}] workspaces ${s.workspacesCreated}, live connections ${s.agentsConnected}, ` +
        `skewed ${s.skewedConnections}, agents waiting ${s.pendingAgents}, starts ${s.starts} (${s.startsInFlight} under way)`,
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
