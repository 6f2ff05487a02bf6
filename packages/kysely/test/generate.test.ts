import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { formatEpochMicros } from '@agentconn/core';
import {
  type CoderDatabase,
} from '../src/index.js';
import {
  addWorkspaces,
  connectAgents,
  connectDelays,
  generateCoderData,
  type GenerateProgress,
  type GeneratedCoderData,
} from '../src/testing/index.js';
import { openPgliteTestDatabase, openPostgresTestDatabase, type TestDatabase } from './helpers/databases.js';

const BASE = '2026-06-01T00:00:00.000000Z';

interface AgentRow {
  id: string;
  name: string;
  created_at: string;
  first_connected_at: string | null;
  deleted: boolean;
  build_number: number;
  workspace_name: string;
  workspace_deleted: boolean;
  username: string;
  template_name: string;
  version_name: string;
}

/** Every agent row with its build, workspace, owner, template and version, read with plain SQL. */
async function agentRows(db: Kysely<CoderDatabase>): Promise<AgentRow[]> {
  const micros = (column: string) =>
    sql.raw(`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
  const { rows } = await sql<AgentRow>`
    SELECT a.id, a.name, ${micros('a.created_at')} AS created_at, ${micros('a.first_connected_at')} AS first_connected_at,
           a.deleted, b.build_number, w.name AS workspace_name, w.deleted AS workspace_deleted,
           u.username, t.name AS template_name, v.name AS version_name
    FROM workspace_agents a, workspace_resources r, workspace_builds b, workspaces w, users u, templates t, template_versions v
    WHERE r.id = a.resource_id AND b.job_id = r.job_id AND w.id = b.workspace_id AND u.id = w.owner_id
      AND t.id = w.template_id AND v.id = b.template_version_id
    ORDER BY a.id`.execute(db);
  return rows;
}

async function tableCounts(db: Kysely<CoderDatabase>): Promise<Record<string, number>> {
  const { rows } = await sql<Record<string, number>>`
    SELECT (SELECT count(*)::int FROM users) AS users, (SELECT count(*)::int FROM templates) AS templates,
           (SELECT count(*)::int FROM template_versions) AS "templateVersions", (SELECT count(*)::int FROM workspaces) AS workspaces,
           (SELECT count(*)::int FROM workspace_builds) AS "workspaceBuilds",
           (SELECT count(*)::int FROM workspace_resources) AS "workspaceResources",
           (SELECT count(*)::int FROM workspace_agents) AS "workspaceAgents"`.execute(db);
  return rows[0]!;
}

function reportedRows(data: GeneratedCoderData): AgentRow[] {
  return data.agents
    .map((a) => ({
      id: a.id,
      name: a.name,
      created_at: formatEpochMicros(a.createdAtMicros),
      first_connected_at: a.firstConnectedAtMicros === null ? null : formatEpochMicros(a.firstConnectedAtMicros),
      deleted: a.deleted,
      build_number: a.buildNumber,
      workspace_name: a.workspaceName,
      workspace_deleted: a.workspaceDeleted,
      username: a.username,
      template_name: a.templateName,
      version_name: a.templateVersionName,
    }))
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

describe('generateCoderData on PGlite', () => {
  let first: TestDatabase;
  let second: TestDatabase;
  let data: GeneratedCoderData;
  const progress: GenerateProgress[] = [];
  const spec = {
    seed: 42,
    users: 7,
    templates: 3,
    versionsPerTemplate: 2,
    workspaces: 300,
    agentsPerWorkspace: 2,
    buildsPerWorkspace: 3,
    deletedWorkspaceRatio: 0.1,
    deletedAgentRatio: 0.05,
    neverConnectedRatio: 0.2,
    negativeRatio: 0.05,
    connectDelay: connectDelays.uniform(0, 200),
    baseTime: BASE,
    batchSize: 250,
    specialLabels: true,
  } as const;

  beforeAll(async () => {
    first = await openPgliteTestDatabase();
    second = await openPgliteTestDatabase();
    data = await generateCoderData(first.db, { ...spec, onProgress: (p) => progress.push(p) });
  });
  afterAll(async () => {
    await first?.destroy();
    await second?.destroy();
  });

  it('inserts the rows it reports, per table', async () => {
    expect(data.counts).toEqual({
      users: 7,
      templates: 3,
      templateVersions: 6,
      workspaces: 300,
      workspaceBuilds: 900,
      workspaceResources: 900,
      workspaceAgents: 1800,
    });
    expect(await tableCounts(first.db)).toEqual(data.counts);
    expect(data.agents).toHaveLength(1800);
  });

  it('reports every agent exactly as stored, to the microsecond', async () => {
    expect(await agentRows(first.db)).toEqual(reportedRows(data));
  });

  it('mixes the cases the source must tell apart', () => {
    const latest = data.agents.filter((a) => a.latestBuild);
    expect(latest).toHaveLength(600);
    expect(data.agents.filter((a) => !a.latestBuild && a.firstConnectedAtMicros !== null).length).toBeGreaterThan(0);
    expect(data.agents.some((a) => a.workspaceDeleted)).toBe(true);
    expect(data.agents.some((a) => a.deleted)).toBe(true);
    expect(data.agents.some((a) => a.firstConnectedAtMicros === null)).toBe(true);
    const negative = data.agents.filter((a) => a.firstConnectedAtMicros !== null && a.firstConnectedAtMicros < a.createdAtMicros);
    expect(negative.length).toBeGreaterThan(0);
    for (const a of data.agents) {
      if (a.firstConnectedAtMicros === null || a.firstConnectedAtMicros < a.createdAtMicros) continue;
      expect(a.firstConnectedAtMicros - a.createdAtMicros).toBeLessThanOrEqual(200_000_000);
    }
    // Builds are numbered 1..3 in each workspace.
    expect(new Set(data.agents.map((a) => a.buildNumber))).toEqual(new Set([1, 2, 3]));
  });

  it('uses names with quotes, backslashes, newlines and Unicode on request', () => {
    for (const a of data.agents.slice(0, 20)) {
      for (const label of [a.name, a.username, a.templateName, a.workspaceName]) {
        expect(label).toContain('"');
        expect(label).toContain('\\');
        expect(label).toContain('\n');
        expect(label).toContain('🚀');
        expect([...label].length).toBeLessThanOrEqual(64);
      }
    }
  });

  it('reports progress per phase up to the total', () => {
    const last = new Map(progress.map((p) => [p.phase, p]));
    expect([...last.keys()]).toEqual([
      'users',
      'templates',
      'template_versions',
      'workspaces',
      'workspace_builds',
      'workspace_resources',
      'workspace_agents',
    ]);
    for (const p of last.values()) expect(p.done).toBe(p.total);
    expect(progress.filter((p) => p.phase === 'workspace_agents').map((p) => p.done)).toEqual([250, 500, 750, 1000, 1250, 1500, 1750, 1800]);
  });

  it('is deterministic: the same seed and base time give the same rows', async () => {
    const again = await generateCoderData(second.db, spec);
    expect(again.agents).toEqual(data.agents);
    expect(await agentRows(second.db)).toEqual(await agentRows(first.db));
  });

  it('adds workspaces that use the existing users and templates', async () => {
    const added = await addWorkspaces(first.db, { seed: 5, workspaces: 10, agentsPerWorkspace: 1, buildsPerWorkspace: 1, baseTime: BASE });
    expect(added.counts).toEqual({ users: 0, templates: 0, templateVersions: 0, workspaces: 10, workspaceBuilds: 10, workspaceResources: 10, workspaceAgents: 10 });
    const usernames = new Set(data.users.map((u) => u.username));
    const templateNames = new Set(data.templates.map((t) => t.name));
    for (const a of added.agents) {
      expect(usernames.has(a.username)).toBe(true);
      expect(templateNames.has(a.templateName)).toBe(true);
    }
    const counts = await tableCounts(first.db);
    expect(counts.workspaces).toBe(310);
    expect(counts.workspaceAgents).toBe(1810);
  });

  it('connects waiting agents that count, oldest first, at the given time', async () => {
    const waiting = data.agents
      .filter((a) => a.latestBuild && !a.workspaceDeleted && !a.deleted && a.firstConnectedAtMicros === null)
      .sort((x, y) => x.createdAtMicros - y.createdAtMicros || (x.id < y.id ? -1 : 1));
    expect(waiting.length).toBeGreaterThan(3);
    const at = '2026-06-01T00:10:00.000007Z';
    const connected = await connectAgents(first.db, { count: 3, at });
    expect(connected.map((c) => c.id)).toEqual(waiting.slice(0, 3).map((a) => a.id));
    for (const c of connected) expect(formatEpochMicros(c.firstConnectedAtMicros)).toBe(at);
    const rows = new Map((await agentRows(first.db)).map((r) => [r.id, r]));
    for (const c of connected) expect(rows.get(c.id)?.first_connected_at).toBe(at);
    // Agents that do not count are never picked.
    const notCounting = data.agents.filter((a) => (!a.latestBuild || a.workspaceDeleted || a.deleted) && a.firstConnectedAtMicros === null);
    for (const a of notCounting) expect(rows.get(a.id)?.first_connected_at).toBeNull();
  });

  it('connects at the database clock by default, and no more agents than are waiting', async () => {
    const before = Date.now();
    const connected = await connectAgents(first.db, { count: 100_000 });
    expect(connected.length).toBeGreaterThan(0);
    for (const c of connected) expect(c.firstConnectedAtMicros / 1000).toBeGreaterThanOrEqual(before - 5_000);
    expect(await connectAgents(first.db, { count: 5 })).toEqual([]);
  });
});

describe('generateCoderData on the PostgreSQL server', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await openPostgresTestDatabase();
  });
  afterAll(async () => {
    await database?.destroy();
  });

  it('creates 20 000 agents with set-based inserts', async () => {
    const data = await generateCoderData(database.db, {
      seed: 3,
      users: 200,
      templates: 10,
      workspaces: 10_000,
      agentsPerWorkspace: 1,
      buildsPerWorkspace: 2,
      baseTime: BASE,
      collectAgents: false,
    });
    expect(data.agents).toEqual([]);
    expect(data.counts.workspaceAgents).toBe(20_000);
    expect(await tableCounts(database.db)).toEqual({
      users: 200,
      templates: 10,
      templateVersions: 20,
      workspaces: 10_000,
      workspaceBuilds: 20_000,
      workspaceResources: 20_000,
      workspaceAgents: 20_000,
    });
  });
});
