/**
 * The user docs stay short and say what the product does, not how it came to be: word limits for the READMEs, and
 * no dates, commit hashes, work-log wording, machine anecdotes or internal references in any README, in the
 * exporter's `--help` or in a changeset (a future CHANGELOG entry). How figures were obtained goes to
 * bench/RESULTS.md or a package's DESIGN.md, which these rules leave alone. Every link between the docs pages (those
 * too) reaches a file, and a heading where it names one.
 */
import { existsSync, globSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { helpText } from '../packages/exporter/src/config.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

const readmes = globSync('**/README.md', { cwd: root, exclude: (path) => /(^|\/)(node_modules|dist|\.git)$/.test(path) })
  .filter((path) => !path.startsWith('.changeset/'))
  .sort();
const changesets = globSync('.changeset/*.md', { cwd: root }).sort();
/** Every page of docs a reader follows links between: the READMEs, DESIGN.md, RESULTS.md, ARCHITECTURE.md and the like. */
const docs = globSync('**/*.md', { cwd: root, exclude: (path) => /(^|\/)(node_modules|dist|\.git|\.changeset)$/.test(path) })
  .filter((path) => !/(^|\/)CHANGELOG\.md$/.test(path))
  .sort();

const ROOT_README_WORDS = 1800;
const README_WORDS = 1200;

/** Words outside fenced code blocks and HTML comments; a table's pipes and rules are not words. */
function proseWords(markdown: string): number {
  const prose = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/<!--[\s\S]*?-->/g, '');
  return prose.split(/\s+/).filter((token) => /[\p{L}\p{N}]/u.test(token)).length;
}

const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi;

/** What user docs never say, each with the reason a reader sees when one slips in. */
const FORBIDDEN: ReadonlyArray<readonly [string, RegExp]> = [
  ['a date', /\b20\d\d-\d\d-\d\d\b/],
  ['a commit hash', /\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b/],
  ['"SPEC" (users do not have it)', /\bSPEC\b|\.\.\/shared\//],
  ['work-log wording', /\bused to\b|\bbefore:|\b(?:was|were) tried\b|\bmeasured again\b|\bthis session\b/i],
  ['a machine anecdote', /\b\d+[- ]?v?CPUs?\b|\b\d+[- ]cores?\b|\bthis (?:machine|VM)\b|\bload average\b|\bon the test server\b/i],
  ['"the seed" (say Coder PR #24179)', /\bthe seed\b/i],
  ['an internal tool', /farm-studio/i],
];

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading = ''] of markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').matchAll(/^#{1,6}\s+(.*)$/gm)) {
    const slug = heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const repeat = seen.get(slug) ?? 0;
    seen.set(slug, repeat + 1);
    anchors.add(repeat === 0 ? slug : `${slug}-${repeat}`);
  }
  return anchors;
}

/** Links of a page to files or headings that are not there. */
function brokenLinks(path: string): string[] {
  const broken: string[] = [];
  for (const [, target = ''] of read(path).matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z]+:/i.test(target)) continue;
    const [file = '', anchor] = target.split('#');
    const resolved = file === '' ? path : join(dirname(path), file);
    if (!existsSync(join(root, resolved))) broken.push(target);
    else if (anchor !== undefined && resolved.endsWith('.md') && !headingAnchors(read(resolved)).has(anchor)) broken.push(target);
  }
  return broken;
}

function problems(text: string): string[] {
  const found: string[] = [];
  const lines = text.replace(UUID, 'UUID').split('\n');
  lines.forEach((line, index) => {
    for (const [what, pattern] of FORBIDDEN) {
      const match = pattern.exec(line);
      if (match !== null) found.push(`line ${index + 1}: ${what}: "${match[0]}"`);
    }
  });
  return found;
}

describe('user docs', () => {
  it('finds the READMEs and the changesets', () => {
    expect(readmes).toContain('README.md');
    expect(readmes).toContain('packages/core/README.md');
    expect(readmes).toContain('bench/README.md');
    expect(changesets.length).toBeGreaterThan(0);
  });

  it('the root README gives the quick start: the demo and the tests after one install', () => {
    const readme = read('README.md');
    expect(readme).toContain('`pnpm install && pnpm demo`');
    expect(readme).toContain('`pnpm install && pnpm test`');
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(Object.keys(scripts)).toEqual(expect.arrayContaining(['demo', 'test']));
  });

  it.each(readmes)('%s stays within its word limit outside code blocks', (path) => {
    const limit = path === 'README.md' ? ROOT_README_WORDS : README_WORDS;
    expect(proseWords(read(path)), `words outside code blocks (limit ${limit}); move depth to a DESIGN.md or bench/RESULTS.md`).toBeLessThanOrEqual(
      limit,
    );
  });

  it.each([...readmes, ...changesets])('%s has no date, hash, work-log wording or internal reference', (path) => {
    expect(problems(read(path))).toEqual([]);
  });

  it("the exporter's --help has none either", () => {
    expect(problems(helpText('agentconn-exporter'))).toEqual([]);
  });

  it.each(docs)('%s links only to files and headings that exist', (path) => {
    expect(brokenLinks(path)).toEqual([]);
  });

  it("the SELECT-only role's grants are only where a test checks them; the exporter's install points at its own", () => {
    // packages/exporter/README.md: config.test.ts checks its grants; deploy/README.md: deploy.test.ts runs them.
    expect(readmes.filter((path) => /^GRANT SELECT \(/m.test(read(path)))).toEqual(['deploy/README.md', 'packages/exporter/README.md']);
    const install = /^## Install and run\n([\s\S]*?)^## /m.exec(read('packages/exporter/README.md'))?.[1] ?? '';
    expect(install).toContain('](#deploy-against-coders-database)');
    expect(read('packages/kysely/README.md')).toContain('](../exporter/README.md#deploy-against-coders-database)');
  });
});

describe('the rules themselves', () => {
  it('find the anchors GitHub makes of headings', () => {
    expect([...headingAnchors('# Top\n## `report`: history, day one\n```\n# not a heading\n```\n## Top\n### 2026-12-02 (evening)')]).toEqual([
      'top',
      'report-history-day-one',
      'top-1',
      '2026-12-02-evening',
    ]);
  });

  it('count words outside code blocks and comments only', () => {
    expect(proseWords('One two.\n\n```sh\nnot counted here\n```\n| a | b |\n|---|---|\n<!-- nor this -->\nthree')).toBe(5);
  });

  it.each([
    ['measured on 2026-12-03', 'a date'],
    ['as commit 79b788a did', 'a commit hash'],
    ['the targets of SPEC §7', '"SPEC'],
    ['it used to lose rows', 'work-log'],
    ['(before: ~6×)', 'work-log'],
    ['a cursor was tried', 'work-log'],
    ['on a 2-vCPU machine', 'machine'],
    ['about 15 s on a 2-core machine', 'machine'],
    ['the seed reads every agent', 'the seed'],
  ])('catch %j', (text, what) => {
    expect(problems(text).join()).toContain(what);
  });

  it.each([
    'agent 5b8f3c2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f connected',
    'buckets 1, 10, 30, 60, 120, 300, 600, 1800, 3600',
    'a --seed 1 run, 1000000 agents, 2147483647 ms',
    'Coder PR #24179 and #24355',
  ])('let %j through', (text) => {
    expect(problems(text)).toEqual([]);
  });
});
