import { PGlite } from '@electric-sql/pglite';
import type { LogFields, Logger } from '@agentconn/core';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '@agentconn/test-support/ports';
import { ConfigError, defaultSettings, FLAGS } from '../src/config.js';
import { startExporter, type RunningExporter } from '../src/exporter.js';

interface Event {
  readonly level: string;
  readonly message: string;
  readonly fields: LogFields | undefined;
}

function memoryLogger(): Logger & { readonly events: Event[] } {
  const events: Event[] = [];
  const at = (level: string) => (message: string, fields?: LogFields) => void events.push({ level, message, fields });
  return { events, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

let exporter: RunningExporter | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await exporter?.stop();
  exporter = undefined;
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('startExporter with a database the caller supplies', () => {
  it('needs no URL, serves /metrics, polls that database and leaves it open on stop', async () => {
    const db = createPgliteDb(new PGlite());
    cleanups.push(() => db.destroy());
    await migrateToLatest(db);
    const logger = memoryLogger();
    exporter = await startExporter({
      config: { ...defaultSettings(), database: { db }, leaderElection: false, listen: { host: '127.0.0.1', port: 0 }, intervalMs: 200 },
      logger,
    });
    const started = logger.events.find((e) => e.message === 'agentconn exporter started');
    expect(started?.fields?.['database']).toBe('supplied by the program');
    expect(started?.fields?.['leader_election']).toBe(false);
    // A quiet database shows no histogram at first: the start line says why.
    expect(started?.fields?.['counting']).toMatch(/^first connections from now on \(--backfill none\): coderd_agents_first_connection_seconds appears on \/metrics once an agent connects/);
    await expect.poll(async () => (await (await fetch(exporter!.metricsUrl)).text()).match(/agentconn_polls_total\{[^}]*outcome="success"[^}]*\} (\d+)/)?.[1] ?? '0').not.toBe('0');
    await exporter.stop();
    exporter = undefined;
    // The caller's database is still usable: the exporter did not destroy it.
    await expect(db.selectFrom('workspace_agents').select('id').execute()).resolves.toEqual([]);
  });

  it('refuses leader election, which needs a URL for its lock connection, with a clear error', async () => {
    const db = createPgliteDb(new PGlite());
    cleanups.push(() => db.destroy());
    const start = startExporter({ config: { ...defaultSettings(), database: { db }, listen: { host: '127.0.0.1', port: 0 } }, logger: memoryLogger() });
    await expect(start).rejects.toThrow(ConfigError);
    await expect(start).rejects.toThrow(/leader election needs database\.url/);
  });

  it('--listen :PORT serves every interface and logs where, with the loopback form to use instead', async () => {
    const db = createPgliteDb(new PGlite());
    cleanups.push(() => db.destroy());
    await migrateToLatest(db);
    const port = await freePort();
    const listenFlag = FLAGS.find((spec) => spec.flag === 'listen');
    const listen = listenFlag?.parse(`:${port}`);
    expect(listen).toEqual({ host: '', port });
    const logger = memoryLogger();
    exporter = await startExporter({
      config: { ...defaultSettings(), database: { db }, leaderElection: false, listen: listen as { host: string; port: number }, intervalMs: 200 },
      logger,
    });
    const everywhere = logger.events.find((e) => e.message === 'serving on every interface (--listen :PORT)');
    expect(everywhere).toMatchObject({ level: 'info', fields: { port, loopback_only: `--listen 127.0.0.1:${port}` } });
    const started = logger.events.find((e) => e.message === 'agentconn exporter started');
    // Both stacks where the host has IPv6, IPv4 alone otherwise.
    expect([`http://[::]:${port}/metrics`, `http://0.0.0.0:${port}/metrics`]).toContain(started?.fields?.['metrics_url']);
    expect(exporter.metricsUrl).toBe(started?.fields?.['metrics_url']);
    expect(logger.events.indexOf(everywhere!)).toBeLessThan(logger.events.indexOf(started!));
    // Every interface includes loopback over IPv4.
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
  });
});
