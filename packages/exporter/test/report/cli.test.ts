import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePollerState } from '@agentconn/core';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import type { CoderDatabase } from '@agentconn/kysely';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HistoryReport } from '../../src/report/model.js';
import { BASE_MS, DAY_MS, runReportCaptured, seedHistory, shape, type ReportRun } from './fixture.js';

/** The bin users run (it starts the report from its own entry). */
const CLI = fileURLToPath(new URL('../../bin/agentconn-exporter.js', import.meta.url));
const SERVING_CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const SINCE = new Date(BASE_MS - 8 * DAY_MS).toISOString();
const UNTIL = new Date(BASE_MS + DAY_MS).toISOString();

function oneLine(run: ReportRun, code: number, ...mentions: string[]): void {
  expect(run.code, run.stderr).toBe(code);
  const lines = run.stderr.trim().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^agentconn-exporter report: /);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  for (const text of mentions) expect(lines[0]).toContain(text);
}

describe('report on PGlite: formats, bad input and exit codes', () => {
  let db: Kysely<CoderDatabase>;
  let dir: string;
  beforeAll(async () => {
    db = createPgliteDb();
    await seedHistory(db);
    dir = mkdtempSync(join(tmpdir(), 'agentconn-report-cli-'));
  }, 120_000);
  afterAll(async () => {
    await db?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('the JSON fields are stable (a renamed or removed field fails this snapshot)', async () => {
    const run = await runReportCaptured(['--format', 'json', '--since', SINCE, '--until', UNTIL], db);
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as HistoryReport;
    expect(report.schema_version).toBe(1);
    expect([...shape(report)].sort()).toMatchSnapshot();
  });

  it('the table is aligned, in human units, with the trend and the slowest', async () => {
    const run = await runReportCaptured(['--since', SINCE, '--until', UNTIL, '--template', 'template-1,template-2'], db);
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    const header = lines.find((l) => l.startsWith('TEMPLATE '))!;
    const rows = lines.filter((l) => /^template-[12] /.test(l)).slice(0, 2);
    // Right-aligned numbers end where their header ends.
    for (const row of rows) expect(row.slice(0, header.indexOf('P95') + 3)).toMatch(/\d(?:ms|s|m|h)$/);
    expect(run.stdout).toMatch(/\b\d+m\d{2}s\b/);
    expect(run.stdout).not.toContain('template-0 ');
    expect(run.stdout).toContain('Trend per 1d:');
    expect(run.stdout).toContain('Slowest:');
  });

  it.each([
    [['--since', 'yesterday'], '--since'],
    [['--format', 'pdf'], '--format'],
    [['--step', '90ms'], '--step'],
    [['--listen', '127.0.0.1:1'], '--listen'],
    [['--since', SINCE, '--until', SINCE], 'empty range'],
    [['--since', UNTIL, '--until', SINCE], 'is before --since'],
    [['--template', 'nope'], 'unknown template "nope" (templates: template-0, template-1, template-2, template-3)'],
    [['--since', '400d', '--step', '1m'], 'give a longer --step'],
  ])('bad input %j: exit 2, one line naming %s', async (argv, mention) => {
    const file = join(dir, 'bad.json');
    oneLine(await runReportCaptured([...argv, '-o', file], db), 2, mention);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a range without data: exit 3, and the report says "no data"', async () => {
    const empty = ['--since', '2020-01-01', '--until', '2020-02-01'];
    const table = await runReportCaptured(empty, db);
    oneLine(table, 3, 'no data');
    expect(table.stdout).toContain('No data: no sample in this range.');
    const json = await runReportCaptured([...empty, '--format', 'json'], db);
    expect(json.code).toBe(3);
    const report = JSON.parse(json.stdout) as HistoryReport;
    expect(report.families[0]!.groups).toEqual([]);
    expect(report.families[0]!.totals[0]!.current.count).toBe(0);
    const html = await runReportCaptured([...empty, '--format', 'html'], db);
    expect(html.code).toBe(3);
    expect(html.stdout).toContain('No data');
  });

  it('openmetrics with --state-file hands over: the history ends at the database now and the exporter counts from there', async () => {
    const state = join(dir, 'state.json');
    const file = join(dir, 'history.om');
    const before = Date.now();
    const run = await runReportCaptured(['--format', 'openmetrics', '--since', '30d', '--state-file', state, '-o', file], db);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('now tells the exporter to count from there');
    const saved = parsePollerState(readFileSync(state, 'utf8'));
    expect(saved.countFromMs).toBe(saved.watermarkMs);
    expect(saved.handled).toEqual([]);
    expect(saved.countFromMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 5000);
    expect(saved.countFromMs % 1000).toBe(0);
    // The last samples are at that instant.
    const last = readFileSync(file, 'utf8').trim().split('\n').at(-2)!;
    expect(last.split(' ').at(-1)).toBe(String(saved.countFromMs / 1000));

    // A second run finds the exporter's file: it will not guess where the exporter started.
    const again = join(dir, 'again.om');
    oneLine(await runReportCaptured(['--format', 'openmetrics', '--state-file', state, '-o', again], db), 2, '--until');
    expect(existsSync(again)).toBe(false);
    // With --until given, it writes the history and leaves the state file alone.
    const text = readFileSync(state, 'utf8');
    expect((await runReportCaptured(['--format', 'openmetrics', '--state-file', state, '--until', UNTIL, '-o', again], db)).code).toBe(0);
    expect(readFileSync(state, 'utf8')).toBe(text);
  });
});

describe('report on the PostgreSQL server: the binary, timeouts, an unreachable database', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('agentconn_report_cli');
    const db = createPostgresDb(database.url);
    try {
      await seedHistory(db, { workspaces: 3000 });
    } finally {
      await db.destroy();
    }
  }, 120_000);
  afterAll(async () => {
    await database?.drop();
  });

  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [CLI, 'report', ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'], ...env }, timeout: 60_000 });

  it('report --help exits 0; the serving --help is unchanged', () => {
    const help = cli(['--help']);
    expect(help.status).toBe(0);
    for (const flag of ['--since', '--until', '--step', '--template', '--format', '--output', '--database-url', '--state-file']) expect(help.stdout).toContain(flag);
    const serving = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    expect(serving.status).toBe(0);
    expect(serving.stdout).toContain('--listen');
    // The serving entry dispatches the subcommand too.
    const direct = spawnSync(process.execPath, [SERVING_CLI, 'report', '--help'], { encoding: 'utf8' });
    expect(direct.status).toBe(0);
    expect(direct.stdout).toBe(help.stdout);
  });

  it('reads DATABASE_URL as the exporter does and writes JSON', () => {
    const run = cli(['--format', 'json', '--since', SINCE, '--until', UNTIL], { DATABASE_URL: database.url });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect((JSON.parse(run.stdout) as HistoryReport).families[0]!.totals[0]!.current.count).toBeGreaterThan(1000);
  });

  it('a statement timeout: exit 1, one line naming --statement-timeout, no partial file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentconn-report-timeout-'));
    try {
      const file = join(dir, 'report.html');
      writeFileSync(file, 'the previous report');
      const run = cli(['--database-url', database.url, '--statement-timeout', '1ms', '--since', SINCE, '--until', UNTIL, '--format', 'html', '-o', file]);
      oneLine({ code: run.status ?? -1, stdout: run.stdout, stderr: run.stderr }, 1, '--statement-timeout 1ms');
      expect(readFileSync(file, 'utf8')).toBe('the previous report');
      expect(readdirSync(dir)).toEqual(['report.html']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unreachable database: exit 1, one line without the password', async () => {
    const port = await freePort();
    const run = cli(['--database-url', `postgres://reader:s3cret-pw@127.0.0.1:${port}/coder`]);
    oneLine({ code: run.status ?? -1, stdout: run.stdout, stderr: run.stderr }, 1, 'ECONNREFUSED');
    expect(run.stderr).not.toContain('s3cret-pw');
  });
});
