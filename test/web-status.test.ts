import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '@agentconn/kysely/testing';
import { createPostgresDb } from '@agentconn/kysely/postgres';
import { spawnExporter } from './helpers/exporter-process.js';
import { freePort } from '@agentconn/test-support/ports';
import { createTestDatabase, type TestDatabase } from '@agentconn/test-support/postgres';
import { startTcpProxy, type TcpProxy } from '@agentconn/test-support/tcp-proxy';

async function status(url: string): Promise<{ code: number; body: string }> {
  const response = await fetch(url);
  return { code: response.status, body: await response.text() };
}

async function until(url: string, code: number, timeoutMs = 15_000): Promise<{ code: number; body: string }> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const reply = await status(url);
    if (reply.code === code) return reply;
    if (Date.now() > end) throw new Error(`${url} did not answer ${code} within ${timeoutMs} ms (last: ${reply.code} ${reply.body})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('landing page, /healthz and /readyz', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  beforeAll(async () => {
    database = await createTestDatabase('agentconn_web');
    const db = createPostgresDb(database.url);
    await migrateToLatest(db);
    await db.destroy();
    const target = new URL(database.url);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  });
  afterAll(async () => {
    await proxy?.close();
    await database?.drop();
  });

  it('/readyz goes 503 → 200 → 503 → 200 across a database outage while /healthz stays 200', async () => {
    const proxied = new URL(database.url);
    proxied.port = String(proxy.port);
    await proxy.block(); // down from the start: not ready before any poll succeeded
    const port = await freePort();
    const exporter = spawnExporter(['--database-url', proxied.toString(), '--listen', `127.0.0.1:${port}`, '--interval', '1s']);
    const base = `http://127.0.0.1:${port}`;
    const health: number[] = [];
    let probe: NodeJS.Timeout | undefined;
    try {
      await exporter.started;
      probe = setInterval(() => {
        fetch(`${base}/healthz`).then((r) => health.push(r.status), () => health.push(0));
      }, 250);
      const before = await status(`${base}/readyz`);
      expect(before.code).toBe(503);
      expect(before.body).toMatch(/^not ready: no successful poll yet/);
      expect(before.body.trim().split('\n')).toHaveLength(1);

      await proxy.unblock();
      expect((await until(`${base}/readyz`, 200)).body).toMatch(/^ready: last successful poll/);

      await proxy.block();
      const down = await until(`${base}/readyz`, 503);
      expect(down.body).toMatch(/^not ready: no successful poll for \d+ s: /);
      expect(down.body.trim().split('\n')).toHaveLength(1);

      await proxy.unblock();
      await until(`${base}/readyz`, 200);

      expect(health.length).toBeGreaterThan(10);
      expect(health.every((code) => code === 200)).toBe(true);

      const landing = await fetch(`${base}/`);
      expect(landing.status).toBe(200);
      expect(landing.headers.get('content-type')).toMatch(/^text\/html/);
      const html = await landing.text();
      expect(html).toContain('agentconn exporter');
      expect(html).toMatch(/<td>\d+\.\d+\.\d+<\/td>/);
      expect(html).toContain('<a href="/metrics">');
      expect(html).toMatch(/leader \(observing\)|follower \(not observing\)/);
      expect(html).toMatch(/last successful poll<\/th><td>\d{4}-\d\d-\d\dT/);
      expect(html).not.toContain(proxied.password || 'never-a-password');

      expect((await fetch(`${base}/nope`)).status).toBe(404);
      for (const path of ['/', '/healthz', '/readyz', '/metrics']) {
        const post = await fetch(`${base}${path}`, { method: 'POST' });
        expect(post.status, path).toBe(405);
        expect(post.headers.get('allow')).toBe('GET, HEAD');
      }
      expect(await exporter.stop('SIGTERM')).toBe(0);
    } finally {
      clearInterval(probe);
      exporter.child.kill('SIGKILL');
    }
  }, 60_000);
});
