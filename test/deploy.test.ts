/**
 * The deployment as a user runs it: the image built from the Containerfile, run with podman against the real
 * PostgreSQL; the kustomize manifests rendered with kubectl, and the Deployment that deploy/README.md's steps
 * make run with two replicas under `podman kube play`.
 *
 * No image registry is reachable, so the base image is built locally (tests/helpers/podman.ts) and cached
 * between runs by a tag made from its recipe. What the test leaves behind: that base image, podman's own
 * pause image for pods, and the pnpm store that the Containerfile keeps in a build cache mount.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { sumSamples } from '@agentconn/test-support/exposition-parser';
import { freePort } from '@agentconn/test-support/ports';
import { BASE_DATABASE_URL } from '@agentconn/test-support/postgres';
import type { Kysely } from 'kysely';
import { AWAITING_REQUIREMENT, checkCoderSchema, FIRST_CONNECTION_REQUIREMENT, SUPPORTED_CODER_SCHEMA } from '@agentconn/kysely';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { connectNow, createCoderFixture, waitFor, type CoderFixture } from './helpers/coder-data.js';
import { Podman, ensureTestBaseImage, extraCaFile, findProgram, mustRun } from './helpers/podman.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README = readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8');
const PODMAN = findProgram('podman');
const KUBECTL = findProgram('kubectl');
const OVERLAYS = ['base', 'prometheus-operator', 'scrape-annotations'] as const;

function log(line: string): void {
  process.stderr.write(`deploy test: ${line}\n`);
}

type Manifest = Record<string, any>;

function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

async function kustomize(dir: string): Promise<Manifest[]> {
  return parseManifests((await mustRun(KUBECTL!, ['kustomize', dir])).stdout);
}

function only(manifests: readonly Manifest[], kind: string): Manifest {
  const found = manifests.filter((m) => m['kind'] === kind);
  expect(found.map((m) => m['kind'])).toEqual([kind]);
  return found[0]!;
}

/** The fenced code blocks of deploy/README.md with the given language whose text contains `marker`. */
function readmeBlock(language: string, marker: string): string {
  const blocks = [...README.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === language && m[2]!.includes(marker));
  expect(blocks, `one \`\`\`${language} block of deploy/README.md containing ${marker}`).toHaveLength(1);
  return blocks[0]![2]!;
}

async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: await response.text() };
}

async function waitForStatus(url: string, status: number, timeoutMs: number): Promise<void> {
  await waitFor(async () => (await httpGet(url).catch(() => ({ status: 0 }))).status === status, timeoutMs, `${url} answering ${status}`);
}

/** Package names of a pnpm virtual store's directories (`@scope+name@1.2.3_peer…` → `@scope/name`). */
function packageNamesOfStore(dirs: readonly string[]): string[] {
  return dirs
    .filter((dir) => dir !== 'node_modules' && dir !== 'lock.yaml')
    .map((dir) => {
      const at = dir.indexOf('@', dir.startsWith('@') ? 1 : 0);
      const name = at === -1 ? dir : dir.slice(0, at);
      return name.startsWith('@') ? name.replace('+', '/') : name;
    });
}

interface PackageManifest {
  readonly version?: string;
  readonly dependencies?: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
}

function workspaceManifest(path: string): PackageManifest {
  return JSON.parse(readFileSync(join(ROOT, path), 'utf8')) as PackageManifest;
}

/**
 * The README's SQL, for a role and password of the test's own, on a Coder fixture given the `schema_migrations`
 * table a Coder database has (golang-migrate's; the README grants it to the role, optionally).
 */
async function createReadmeRole(fixture: CoderFixture, role: string, password: string): Promise<void> {
  const text = readmeBlock('sql', 'CREATE ROLE')
    .replace(/\bagentconn\b/g, role)
    .replace(/\bDATABASE coder\b/, `DATABASE ${fixture.database.name}`)
    .replace(`'choose-a-password'`, `'${password}'`);
  const admin = new pg.Client({ connectionString: fixture.database.url });
  await admin.connect();
  try {
    await admin.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
      INSERT INTO schema_migrations VALUES (${CODER_MIGRATION}, false) ON CONFLICT DO NOTHING`);
    await admin.query(text);
  } finally {
    await admin.end();
  }
}

async function dropRole(role: string): Promise<void> {
  const admin = new pg.Client({ connectionString: BASE_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
  } finally {
    await admin.end();
  }
}

/** A migration of Coder's supported range, as the fixture's `schema_migrations` says. */
const CODER_MIGRATION = SUPPORTED_CODER_SCHEMA.throughMigration;

describe("deploy/README.md's role", () => {
  it('runs on a Coder database and lets the preflight find every column and name the migration', async () => {
    const fixture = await createCoderFixture({ workspaces: 4 });
    const suffix = randomBytes(4).toString('hex');
    const role = `agentconn_deploy_sql_${suffix}`;
    const password = randomBytes(12).toString('hex');
    try {
      await createReadmeRole(fixture, role, password);
      const url = new URL(fixture.database.url);
      url.username = role;
      url.password = password;
      const db = createPostgresDb(url.toString());
      try {
        const check = await checkCoderSchema(db as Kysely<unknown>, [FIRST_CONNECTION_REQUIREMENT, AWAITING_REQUIREMENT]);
        expect(check.features.flatMap((feature) => feature.problems.map((problem) => problem.text))).toEqual([]);
        expect(check.coderMigration).toBe(CODER_MIGRATION);
      } finally {
        await db.destroy();
      }
    } finally {
      await fixture.close();
      await dropRole(role);
    }
  }, 60_000);
});

describe.skipIf(KUBECTL === undefined)(`the kustomize manifests${KUBECTL === undefined ? ' (skipped: kubectl is not installed)' : ''}`, () => {
  it('render, with a Deployment of two replicas whose probes, Secret, security context and resources are set', async () => {
    for (const overlay of OVERLAYS) {
      const manifests = await kustomize(join(ROOT, 'deploy', overlay));
      const deployment = only(manifests, 'Deployment');
      const service = only(manifests, 'Service');
      const budget = only(manifests, 'PodDisruptionBudget');
      const spec = deployment['spec'];
      const pod = spec.template.spec;
      const container = pod.containers[0];
      const podLabels = spec.template.metadata.labels;
      expect({ overlay, replicas: spec.replicas, containers: pod.containers.length }).toEqual({ overlay, replicas: 2, containers: 1 });
      expect(spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'agentconn-exporter' });
      for (const selector of [spec.selector.matchLabels, service.spec.selector, budget.spec.selector.matchLabels]) {
        expect(podLabels).toMatchObject(selector);
      }
      expect(budget.spec.maxUnavailable).toBe(1);
      expect(container.ports).toEqual([{ name: 'metrics', containerPort: 9464 }]);
      expect(service.spec.ports).toEqual([{ name: 'metrics', port: 9464, targetPort: 'metrics' }]);
      expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
      expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
      expect(container.securityContext).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532 });
      expect(container.resources.requests).toHaveProperty('memory');
      expect(container.resources.limits).toHaveProperty('memory');
      // The URL file the exporter reads is the Secret's `url` key, where the volume mounts it.
      const mount = container.volumeMounts.find((m: Manifest) => m['name'] === 'database');
      const volume = pod.volumes.find((v: Manifest) => v['name'] === 'database');
      expect(mount.readOnly).toBe(true);
      expect(volume.secret).toMatchObject({ secretName: 'agentconn-database', items: [{ key: 'url', path: 'url' }] });
      expect(container.args).toEqual([`--database-url-file=${mount.mountPath}/url`]);
      if (overlay === 'prometheus-operator') {
        const monitor = only(manifests, 'ServiceMonitor');
        expect(service.metadata.labels).toMatchObject(monitor['spec'].selector.matchLabels);
        expect(monitor['spec'].endpoints.map((e: Manifest) => [e['port'], e['path']])).toEqual([['metrics', '/metrics']]);
      } else {
        expect(manifests.filter((m) => m['kind'] === 'ServiceMonitor')).toEqual([]);
      }
      const annotations = spec.template.metadata.annotations ?? {};
      if (overlay === 'scrape-annotations') {
        expect(annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9464', 'prometheus.io/path': '/metrics' });
      } else {
        expect(annotations).toEqual({});
      }
    }
  });
});

describe.skipIf(PODMAN === undefined)(
  `the image and the Deployment under podman${PODMAN === undefined ? ' (skipped: podman is not installed; apt-get install podman buildah runc debootstrap)' : ''}`,
  () => {
    const suffix = randomBytes(4).toString('hex');
    const image = `localhost/agentconn-exporter-test:${suffix}`;
    const role = `agentconn_deploy_${suffix}`;
    const password = randomBytes(12).toString('hex');
    const containerName = `agentconn-deploy-test-${suffix}`;
    let podman: Podman;
    let work: string;
    let fixture: CoderFixture | undefined;
    let imageBuilt = false;
    let playedFile: string | undefined;
    const pods: string[] = [];

    function roleUrl(host: string): string {
      const url = new URL(fixture!.database.url);
      url.username = role;
      url.password = password;
      url.host = `${host}:${url.port || '5432'}`;
      return `${url.toString()}?sslmode=disable`;
    }

    beforeAll(async () => {
      podman = new Podman();
      work = mkdtempSync(join(tmpdir(), 'agentconn-deploy-'));
      const startedAt = performance.now();
      const base = await ensureTestBaseImage(podman, log);
      log(`base image ${base} ready in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
      const buildStarted = performance.now();
      const ca = extraCaFile();
      const build = await podman.run(
        [
          'build',
          '--layers=false',
          '--file',
          join(ROOT, 'Containerfile'),
          '--build-arg',
          `BASE=${base}`,
          ...(ca === undefined ? [] : ['--secret', `id=npm-ca,src=${ca}`]),
          '--tag',
          image,
          ROOT,
        ],
        600_000,
      );
      if (build.code !== 0) throw new Error(`podman build exited ${build.code}\n${build.stdout.slice(-4000)}${build.stderr.slice(-4000)}`);
      imageBuilt = true;
      log(`image ${image} built in ${((performance.now() - buildStarted) / 1000).toFixed(1)} s`);
      fixture = await createCoderFixture({ workspaces: 40 });
      await createReadmeRole(fixture, role, password);
    }, 900_000);

    afterAll(async () => {
      if (podman === undefined) return;
      await podman.run(['rm', '--force', '--time', '0', containerName]);
      if (playedFile !== undefined) await podman.run(['kube', 'down', playedFile]);
      if (pods.length > 0) await podman.run(['pod', 'rm', '--force', ...pods]);
      if (imageBuilt) await podman.run(['rmi', '--force', image]);
      podman.close();
      await fixture?.close();
      await dropRole(role);
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    }, 120_000);

    it('carries the OCI labels, a numeric non-root user, port 9464 and the listen address in its environment', async () => {
      const [config] = JSON.parse(await podman.must(['image', 'inspect', image])) as Array<{ Config: Manifest; Size: number }>;
      const { version } = workspaceManifest('packages/exporter/package.json');
      expect(config!.Config['Labels']).toMatchObject({
        'org.opencontainers.image.source': 'https://github.com/agentconn/agentconn',
        'org.opencontainers.image.version': version,
        'org.opencontainers.image.licenses': 'Apache-2.0',
      });
      expect(config!.Config['User']).toBe('65532:65532');
      expect(Object.keys(config!.Config['ExposedPorts'])).toEqual(['9464/tcp']);
      expect(config!.Config['Env']).toContain('AGENTCONN_LISTEN=0.0.0.0:9464');
      log(`image size ${(config!.Size / 1e6).toFixed(0)} MB`);
    });

    it('holds the exporter and its production dependencies only: no development dependencies, tests or .git', async () => {
      const script = `
        const fs = require('node:fs'), path = require('node:path');
        const found = { git: [], ours: [], store: fs.readdirSync('/app/node_modules/.pnpm'), buildStage: fs.existsSync('/src') };
        const walk = (dir, visit) => {
          for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
            const full = path.join(dir, entry.name);
            visit(full, entry);
            if (entry.isDirectory() && !['/proc', '/sys', '/dev'].includes(full)) walk(full, visit);
          }
        };
        walk('/', (full, entry) => { if (entry.name === '.git') found.git.push(full); });
        walk('/app', (full, entry) => { if (!entry.isDirectory() && !full.startsWith('/app/node_modules/')) found.ours.push(full); });
        for (const dir of found.store.filter((d) => d.startsWith('@agentconn+'))) {
          walk(path.join('/app/node_modules/.pnpm', dir, 'node_modules/@agentconn'), (full, entry) => { if (!entry.isDirectory()) found.ours.push(full); });
        }
        process.stdout.write(JSON.stringify(found));`;
      // As root, to see every directory (the exporter's user cannot list /root).
      const found = JSON.parse(await podman.must(['run', '--rm', '--network', 'none', '--user', '0:0', '--entrypoint', 'node', image, '-e', script])) as {
        git: string[];
        ours: string[];
        store: string[];
        buildStage: boolean;
      };
      const installed = new Set(packageNamesOfStore(found.store));
      const published = ['core', 'kysely', 'exposition', 'exporter'].map((p) => workspaceManifest(`packages/${p}/package.json`));
      // What the workspace needs only to build and test: development dependencies that no published package
      // depends on (a package's peers are its development dependencies, and may be another's dependencies).
      const needed = new Set(published.flatMap((manifest) => Object.keys(manifest.dependencies ?? {})));
      const devOnly = [workspaceManifest('package.json'), workspaceManifest('test-support/package.json'), ...published]
        .flatMap((manifest) => Object.keys(manifest.devDependencies ?? {}))
        .filter((name) => !needed.has(name));
      expect(devOnly).toEqual(expect.arrayContaining(['typescript', 'vitest', '@electric-sql/pglite', '@agentconn/test-support']));
      expect(devOnly.filter((name) => installed.has(name))).toEqual([]);
      const exporter = workspaceManifest('packages/exporter/package.json');
      for (const name of Object.keys(exporter.dependencies ?? {})) expect({ name, installed: installed.has(name) }).toEqual({ name, installed: true });
      expect(found.git).toEqual([]);
      expect(found.buildStage).toBe(false);
      expect(found.ours.filter((path) => /(^|\/)(test|tests|__tests__)\/|\.test\.[cm]?[jt]s$|tsconfig|tsbuildinfo|vitest/.test(path))).toEqual([]);
      expect(found.ours).toContain('/app/dist/cli.js');
      expect(found.ours).toContain('/app/LICENSE');
    });

    it('runs as a non-root user on a read-only root filesystem with the URL from a mounted file, and stops on SIGTERM with 0 within 5 s', async () => {
      const connectedBefore = fixture!.counting.slice(0, 5);
      await connectNow(fixture!.db, connectedBefore);
      // Its own network namespace, as in a pod: the image's 0.0.0.0:9464 published on loopback only, and the
      // database on the host's loopback through slirp4netns (10.0.2.2).
      const secretDir = join(work, 'secret');
      mkdirSync(secretDir);
      writeFileSync(join(secretDir, 'url'), `${roleUrl('10.0.2.2')}\n`, { mode: 0o644 });
      const port = await freePort();
      const runStarted = Date.now();
      await podman.must([
        'run',
        '--detach',
        '--name',
        containerName,
        '--read-only',
        '--read-only-tmpfs=false',
        '--cap-drop=ALL',
        '--security-opt=no-new-privileges',
        '--network',
        'slirp4netns:allow_host_loopback=true',
        '--publish',
        `127.0.0.1:${port}:9464`,
        '--volume',
        `${join(secretDir, 'url')}:/etc/agentconn/database/url:ro`,
        '--env',
        'AGENTCONN_BACKFILL=all',
        image,
        '--database-url-file',
        '/etc/agentconn/database/url',
      ]);
      const base = `http://127.0.0.1:${port}`;
      await waitForStatus(`${base}/readyz`, 200, 30_000);
      const metrics = await httpGet(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(sumSamples(metrics.body, 'coderd_agents_first_connection_seconds_count')).toBe(connectedBefore.length);
      expect(sumSamples(metrics.body, 'agentconn_leader')).toBe(1);
      const [startedNs, pid, readOnly] = (
        await podman.must(['inspect', containerName, '--format', '{{.State.StartedAt.UnixNano}} {{.State.Pid}} {{.HostConfig.ReadonlyRootfs}}'])
      )
        .trim()
        .split(' ');
      expect(readOnly).toBe('true');
      const firstPollMs = sumSamples(metrics.body, 'agentconn_last_success_timestamp_seconds') * 1000;
      log(
        `start-up: container start → first successful poll ${(firstPollMs - Number(startedNs) / 1e6).toFixed(0)} ms; ` +
          `podman run → first successful poll ${(firstPollMs - runStarted).toFixed(0)} ms`,
      );
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      expect(uid).toBe('65532');
      const write = await podman.run(['exec', containerName, 'sh', '-c', 'echo x > /tmp/probe']);
      expect({ code: write.code === 0 ? 0 : 'failed', stderr: write.stderr }).toMatchObject({ code: 'failed', stderr: expect.stringContaining('Read-only file system') });

      const stopStarted = performance.now();
      await podman.must(['kill', '--signal', 'TERM', containerName]);
      const exitCode = Number((await podman.must(['wait', containerName], 30_000)).trim());
      const stopMs = performance.now() - stopStarted;
      log(`SIGTERM → exit ${exitCode} in ${stopMs.toFixed(0)} ms`);
      expect(exitCode).toBe(0);
      expect(stopMs).toBeLessThan(5_000);
      const logs = await podman.run(['logs', containerName]);
      expect(logs.stderr).toContain('"msg":"stopping","signal":"SIGTERM"');
      expect(logs.stderr).toContain('"msg":"agentconn exporter stopped"');
      expect(logs.stdout + logs.stderr).not.toContain(password);
      await podman.must(['rm', containerName]);
    }, 120_000);

    it("deploy/README.md's steps, run with two replicas under podman kube play: one leader, both ready and scraped", async () => {
      // Step 2: the README's Secret command, with this test's URL, printed instead of sent to a cluster.
      const url = roleUrl('127.0.0.1');
      const secretCommand = readmeBlock('sh', 'create secret').replace(/'postgres:\/\/[^']*'/, `'${url}'`);
      const secret = parseManifests((await mustRun('sh', ['-c', `${secretCommand.trim()} --dry-run=client -o yaml`])).stdout)[0]!;
      expect(secret['metadata']).toMatchObject({ name: 'agentconn-database', namespace: 'coder' });
      const secretUrl = Buffer.from(secret['data'].url as string, 'base64').toString('utf8');
      expect(secretUrl).toBe(url);

      // Step 3: the README's overlay beside a checkout named agentconn; kubectl kustomize instead of apply -k.
      const home = join(work, 'home');
      mkdirSync(home);
      symlinkSync(ROOT, join(home, 'agentconn'));
      const overlayScript = readmeBlock('sh', 'kustomization.yaml');
      expect(overlayScript.trim().split('\n').at(-1)).toBe('kubectl apply -k agentconn-coder');
      await mustRun('sh', ['-c', overlayScript.replace('kubectl apply -k agentconn-coder', 'kubectl kustomize agentconn-coder > rendered.yaml')], { cwd: home });
      const rendered = parseManifests(readFileSync(join(home, 'rendered.yaml'), 'utf8'));
      expect(rendered.map((m) => m['kind']).sort()).toEqual(['Deployment', 'PodDisruptionBudget', 'Service', 'ServiceMonitor']);
      const readmeDeployment = only(rendered, 'Deployment');
      expect(readmeDeployment['metadata'].namespace).toBe('coder');
      const readmeContainer = readmeDeployment['spec'].template.spec.containers[0];

      // What a cluster would do that podman cannot: the test overlay shares the host's network (the database
      // listens on loopback) with each replica on a free loopback port (two pods on one host), polls every
      // second, plays the kubelet for the Secret (podman 4.3 writes a Secret's data still base64-encoded),
      // and leaves the probes to this test (podman runs them as curl inside the container, with systemd timers;
      // it also refuses container ports on the host's network).
      const secretDir = join(work, 'kube-secret');
      mkdirSync(secretDir);
      writeFileSync(join(secretDir, 'url'), secretUrl, { mode: 0o644 });
      const testOverlay = join(work, 'test-overlay');
      mkdirSync(testOverlay);
      const volumeIndex = readmeDeployment['spec'].template.spec.volumes.findIndex((v: Manifest) => v['name'] === 'database');
      const patch = [
        { op: 'add', path: '/spec/template/spec/hostNetwork', value: true },
        {
          op: 'add',
          path: '/spec/template/spec/containers/0/env',
          value: [
            { name: 'AGENTCONN_LISTEN', value: '127.0.0.1:0' },
            { name: 'AGENTCONN_INTERVAL', value: '1s' },
          ],
        },
        { op: 'remove', path: '/spec/template/spec/containers/0/ports' },
        { op: 'remove', path: '/spec/template/spec/containers/0/livenessProbe' },
        { op: 'remove', path: '/spec/template/spec/containers/0/readinessProbe' },
        { op: 'replace', path: `/spec/template/spec/volumes/${volumeIndex}`, value: { name: 'database', hostPath: { path: secretDir, type: 'Directory' } } },
      ];
      const [imageName, imageTag] = image.split(/:(?=[^:]+$)/);
      writeFileSync(
        join(testOverlay, 'kustomization.yaml'),
        JSON.stringify({
          apiVersion: 'kustomize.config.k8s.io/v1beta1',
          kind: 'Kustomization',
          resources: [relative(testOverlay, join(home, 'agentconn-coder'))],
          nameSuffix: `-${suffix}`,
          images: [{ name: readmeContainer.image.split(':')[0], newName: imageName, newTag: imageTag }],
          patches: [{ target: { kind: 'Deployment' }, patch: JSON.stringify(patch) }],
        }),
      );
      const deployment = only(await kustomize(testOverlay), 'Deployment');
      const name = deployment['metadata'].name as string;
      playedFile = join(work, 'deployment.yaml');
      writeFileSync(playedFile, JSON.stringify(deployment));
      pods.push(`${name}-pod-0`, `${name}-pod-1`);
      const played = await podman.run(['kube', 'play', playedFile], 120_000);
      expect(played.code, played.stderr).toBe(0);
      const containers = pods.map((pod) => `${pod}-${readmeContainer.name}`);

      // Each replica logs where it listens; then both get ready.
      const bases: string[] = [];
      for (const container of containers) {
        let started: string | undefined;
        await waitFor(
          async () => {
            const logs = await podman.run(['logs', container]);
            const line = logs.stderr.split('\n').find((l) => l.includes('"msg":"agentconn exporter started"'));
            started = line === undefined ? undefined : (JSON.parse(line) as { metrics_url: string }).metrics_url;
            return started !== undefined;
          },
          30_000,
          `${container} started`,
        );
        bases.push(started!.replace(/\/metrics$/, ''));
      }
      for (const base of bases) await waitForStatus(`${base}/readyz`, 200, 30_000);
      for (const probe of [readmeContainer.livenessProbe, readmeContainer.readinessProbe]) {
        expect(probe.httpGet.port).toBe(readmeContainer.ports[0].name);
        for (const base of bases) expect({ path: probe.httpGet.path, status: (await httpGet(`${base}${probe.httpGet.path}`)).status }).toEqual({ path: probe.httpGet.path, status: 200 });
      }
      const leaderOf = async (base: string) => sumSamples((await httpGet(`${base}/metrics`)).body, 'agentconn_leader');
      await waitFor(async () => (await Promise.all(bases.map(leaderOf))).reduce((a, b) => a + b, 0) === 1, 15_000, 'one leader');
      const leaders = await Promise.all(bases.map(leaderOf));
      expect(leaders.sort()).toEqual([0, 1]);
      // What the README's check step looks for in the logs: exactly one `became leader`, no error.
      const logs = await Promise.all(containers.map(async (container) => (await podman.run(['logs', container])).stderr));
      expect(logs.map((text) => text.includes('"msg":"became leader')).sort()).toEqual([false, true]);
      expect(logs.filter((text) => text.includes('"level":"error"'))).toEqual([]);

      // Agents connecting now are observed once, by the leader.
      const connecting = fixture!.counting.slice(5, 9);
      await connectNow(fixture!.db, connecting);
      const counts = async () =>
        Promise.all(bases.map(async (base) => sumSamples((await httpGet(`${base}/metrics`)).body, 'coderd_agents_first_connection_seconds_count')));
      await waitFor(async () => (await counts()).reduce((a, b) => a + b, 0) >= connecting.length, 15_000, 'the new connections observed');
      const observed = await counts();
      expect(observed.sort()).toEqual([0, connecting.length]);
      for (const base of bases) expect((await httpGet(`${base}/readyz`)).status).toBe(200);

      // Stopping the pods sends SIGTERM: both exit 0.
      const stopStarted = performance.now();
      await podman.must(['pod', 'stop', '--time', '10', ...pods], 60_000);
      log(`two pods stopped in ${(performance.now() - stopStarted).toFixed(0)} ms`);
      for (const container of containers) {
        const logs = await podman.run(['logs', container]);
        expect(logs.stdout + logs.stderr).not.toContain(password);
        expect((await podman.must(['inspect', container, '--format', '{{.State.ExitCode}}'])).trim()).toBe('0');
      }
      await podman.must(['kube', 'down', playedFile], 60_000);
      playedFile = undefined;
      pods.length = 0;
    }, 180_000);
  },
);
