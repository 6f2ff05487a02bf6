import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createPgliteDb } from '@agentconn/kysely/pglite';
import type { CoderDatabase } from '@agentconn/kysely';
import type { Kysely } from 'kysely';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HistoryReport } from '../../src/report/model.js';
import { BASE_MS, DAY_MS, runReportCaptured, seedHistory } from './fixture.js';

/** Debian's Chromium; the flags keep it from reaching out on its own (updates, first-run pages). */
const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'];
/** The screenshot the README shows; `AGENTCONN_UPDATE_SCREENSHOT=1` rewrites it from this test. */
const DOCS_SCREENSHOT = fileURLToPath(new URL('../../docs/report/report.png', import.meta.url));

describe('report --format html in headless Chromium', () => {
  let db: Kysely<CoderDatabase>;
  let dir: string;
  let file: string;
  let report: HistoryReport;
  let browser: Browser;
  const range = ['--since', new Date(BASE_MS - 10 * DAY_MS).toISOString(), '--until', new Date(BASE_MS + DAY_MS).toISOString(), '--step', '1d'];

  beforeAll(async () => {
    db = createPgliteDb();
    await seedHistory(db);
    dir = mkdtempSync(join(tmpdir(), 'agentconn-report-html-'));
    file = join(dir, 'report.html');
    const html = await runReportCaptured(['--format', 'html', '-o', file, ...range, '--slowest', '3'], db);
    expect(html.stderr).toBe('');
    expect(html.code).toBe(0);
    report = JSON.parse((await runReportCaptured(['--format', 'json', ...range], db)).stdout) as HistoryReport;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await db?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('is one self-contained file: no script, no external reference', () => {
    const html = readFileSync(file, 'utf8');
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*["']?http/i);
  });

  it('opens with JavaScript off: no request but the page, no console error, a chart per template, a screenshot', async () => {
    const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1100, height: 1400 } });
    const page = await context.newPage();
    const requests: string[] = [];
    const failed: string[] = [];
    const errors: string[] = [];
    page.on('request', (request) => requests.push(request.url()));
    page.on('requestfailed', (request) => failed.push(`${request.url()}: ${request.failure()?.errorText}`));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    page.on('pageerror', (error) => errors.push(error.message));
    const url = pathToFileURL(file).href;
    await page.goto(url, { waitUntil: 'load' });

    const templates = report.families[0]!.groups.map((g) => g.template_name!);
    expect(templates.length).toBe(4);
    for (const template of templates) {
      const section = page.locator(`section.group[data-template="${template}"]`);
      await expect.poll(() => section.count()).toBe(1);
      // A trend line per percentile and a bar per bucket and period, drawn.
      expect(await section.locator('figure.trend svg path[aria-roledescription="line mark"], figure.trend svg .mark-line path').count()).toBeGreaterThanOrEqual(3);
      expect(await section.locator('figure.histogram svg .mark-rect path').count()).toBeGreaterThanOrEqual(10);
      const box = await section.locator('figure.trend svg').boundingBox();
      expect(box?.width).toBeGreaterThan(300);
      expect(await section.textContent()).toContain(template);
    }
    expect(await page.locator('table').first().textContent()).toContain('P95');

    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot, clip: { x: 0, y: 0, width: 1100, height: 1000 } });
    expect(statSync(shot).size).toBeGreaterThan(20_000);
    if (process.env['AGENTCONN_UPDATE_SCREENSHOT'] === '1') writeFileSync(DOCS_SCREENSHOT, readFileSync(shot));

    expect(failed).toEqual([]);
    expect(errors).toEqual([]);
    expect(requests).toEqual([url]);
    await context.close();
  });
});
