import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The published packages as a user gets them: `pnpm pack` each, install the tarballs with plain npm into
 * an empty directory (third-party dependencies from the npm registry, through npm's cache), then run the
 * CLI and type-check and run a consumer written against the public entry points.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PUBLISHED = ['core', 'kysely', 'exposition', 'exporter'] as const;
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], cwd: string, timeoutMs = 240_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { cwd, timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(new Error(`${command} ${args.join(' ')} could not run: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });
}

async function mustRun(command: string, args: readonly string[], cwd: string): Promise<Run> {
  const result = await run(command, args, cwd);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) exited ${result.code}\n${result.stdout}${result.stderr}`);
  }
  return result;
}

const CONSUMER = `import { FirstConnectionRecorder, firstConnectionView, type AgentFirstConnection } from '@agentconn/core';
import { FirstConnectionInstrumentation } from '@agentconn/core/instrumentation';
import { createCoderAgentSource, type CoderDatabase } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import type { createPgliteDb } from '@agentconn/kysely/pglite';
import type { FirstConnectionSource } from '@agentconn/core';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { Kysely } from 'kysely';

const labels = ['template_name', 'agent_name'] as const;
const meterProvider = new MeterProvider({ views: [firstConnectionView({ labels: [...labels] })] });
const recorder = new FirstConnectionRecorder({ meterProvider, labels: [...labels] });
const agent: AgentFirstConnection = {
  agentId: '00000000-0000-4000-8000-000000000001',
  createdAt: '2026-11-25T10:00:00.000001Z',
  firstConnectedAt: new Date('2026-11-25T10:00:45Z'),
  labels: { template_name: 'docker', agent_name: 'main', username: 'alice', workspace_name: 'dev' },
};
const outcome: 'observed' | string = recorder.record(agent);

// No connection is made: pg connects on the first query.
const db: Kysely<CoderDatabase> = createPostgresDb('postgres://reader@127.0.0.1:1/coder');
const source: FirstConnectionSource = createCoderAgentSource(db);
type PgliteFactory = typeof createPgliteDb;
const instrumentation = new FirstConnectionInstrumentation({ enabled: false });

console.log(JSON.stringify({ outcome, listAgents: typeof source.listAgents, enabled: instrumentation.isEnabled() }));
await db.destroy();
await meterProvider.shutdown();
export type { PgliteFactory };
`;

describe('the published packages, packed and installed with npm', () => {
  let dir: string;
  /** Tarball file name → the paths it holds. */
  const contents = new Map<string, string[]>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentconn-pack-'));
    await mustRun(TSC, ['-b'], ROOT);
    const tarballs = join(dir, 'tarballs');
    await Promise.all(
      PUBLISHED.map((name) => mustRun('pnpm', ['pack', '--pack-destination', tarballs], join(ROOT, 'packages', name))),
    );
    const files = readdirSync(tarballs).filter((f) => f.endsWith('.tgz'));
    expect(files).toHaveLength(PUBLISHED.length);
    for (const file of files) contents.set(file, (await mustRun('tar', ['-tzf', join(tarballs, file)], dir)).stdout.split('\n'));
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
    // The peers a user adds themselves (pg and the instrumentation base are optional peers), and Node's types.
    await mustRun(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        '--loglevel=error',
        ...files.map((f) => join(tarballs, f)),
        '@opentelemetry/instrumentation@0.301.1',
        '@types/node@24',
        '@types/pg@8.23.1',
      ],
      app,
    );
    // Every @agentconn package comes from its tarball, once: none from the registry, none nested.
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { resolved?: string }>;
    };
    const ours = Object.entries(lock.packages).filter(([path]) => /(^|\/)node_modules\/@agentconn\/[^/]+$/.test(path));
    expect(ours.map(([path]) => path).sort()).toEqual(PUBLISHED.map((name) => `node_modules/@agentconn/${name}`).sort());
    for (const [path, entry] of ours) expect({ path, file: entry.resolved?.startsWith('file:') }).toEqual({ path, file: true });
  }, 300_000);

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('ship their LICENSE, README, CHANGELOG, declarations, and where the code lives', () => {
    expect([...contents.keys()].sort()).toEqual(PUBLISHED.map((name) => `agentconn-${name}-0.1.0.tgz`).sort());
    for (const [file, paths] of contents) {
      for (const wanted of ['package/LICENSE', 'package/README.md', 'package/CHANGELOG.md', 'package/dist/index.d.ts']) {
        expect({ file, has: paths.includes(wanted) }).toEqual({ file, has: true });
      }
      expect({ file, stray: paths.filter((p) => /tsbuildinfo|\/test\//.test(p)) }).toEqual({ file, stray: [] });
    }
    for (const name of PUBLISHED) {
      const pkg = JSON.parse(readFileSync(join(dir, 'app', 'node_modules', '@agentconn', name, 'package.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      expect({ name, license: pkg['license'], has: ['repository', 'homepage', 'bugs'].filter((k) => pkg[k] !== undefined) }).toEqual({
        name,
        license: 'Apache-2.0',
        has: ['repository', 'homepage', 'bugs'],
      });
      // Installed from the tarball: no workspace protocol left for npm to choke on.
      expect(JSON.stringify(pkg)).not.toContain('workspace:');
    }
  });

  it('installs a working agentconn-exporter: --help lists the flags', async () => {
    const result = await run(join(dir, 'app', 'node_modules', '.bin', 'agentconn-exporter'), ['--help'], join(dir, 'app'));
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(result.stdout).toContain('--database-url');
    expect(result.stdout).toContain('--listen');
    // The report subcommand, from its own entry in the tarball, with its chart dependencies installed.
    const report = await run(join(dir, 'app', 'node_modules', '.bin', 'agentconn-exporter'), ['report', '--help'], join(dir, 'app'));
    expect({ code: report.code, stderr: report.stderr }).toEqual({ code: 0, stderr: '' });
    expect(report.stdout).toContain('--format FORMAT');
    const charts = await run(process.execPath, ['--input-type=module', '-e', "await import('vega'); await import('vega-lite');"], join(dir, 'app', 'node_modules', '@agentconn', 'exporter'));
    expect({ code: charts.code, stderr: charts.stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('compiles a consumer with module nodenext, strict and skipLibCheck false, and runs it', async () => {
    const app = join(dir, 'app');
    writeFileSync(join(app, 'consumer.ts'), CONSUMER);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'ES2023',
          lib: ['ES2023'],
          types: ['node'],
          strict: true,
          skipLibCheck: false,
          verbatimModuleSyntax: true,
          outDir: 'out',
        },
        files: ['consumer.ts'],
      }),
    );
    const check = await run(TSC, ['-p', app], app);
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(check.code).toBe(0);
    // The emitted consumer runs against the installed packages' dist/.
    const started = await run(process.execPath, [join('out', 'consumer.js')], app);
    expect({ code: started.code, stderr: started.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(started.stdout)).toEqual({ outcome: 'observed', listAgents: 'function', enabled: false });
  });
});
