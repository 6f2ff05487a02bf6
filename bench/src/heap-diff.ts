/**
 * `node bench/dist/heap-diff.js BEFORE.heapsnapshot AFTER.heapsnapshot [--top N]`: what grew between two
 * V8 heap snapshots (e.g. the two of `bench:rss-soak --heap-snapshots`): count and self size per
 * constructor (objects, closures) or per kind (strings, arrays, code, ...), sorted by the growth in bytes.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: readonly string[]; readonly node_types: readonly [readonly string[], ...unknown[]] } };
  readonly nodes: readonly number[];
  readonly strings: readonly string[];
}

interface Totals {
  count: number;
  bytes: number;
}

/** Groups that name a constructor; the other kinds are summed under their kind. */
const NAMED = new Set(['object', 'closure', 'native']);

async function summarise(file: string): Promise<Map<string, Totals>> {
  const data = JSON.parse(await readFile(file, 'utf8')) as Snapshot;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const groups = new Map<string, Totals>();
  for (let i = 0; i < data.nodes.length; i += width) {
    const type = types[data.nodes[i + typeAt]!] ?? 'unknown';
    const key = NAMED.has(type) ? `${type} ${data.strings[data.nodes[i + nameAt]!] ?? '?'}` : `(${type})`;
    const totals = groups.get(key) ?? { count: 0, bytes: 0 };
    totals.count++;
    totals.bytes += data.nodes[i + sizeAt]!;
    groups.set(key, totals);
  }
  return groups;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
  const [beforeFile, afterFile] = positionals;
  if (beforeFile === undefined || afterFile === undefined) throw new Error('usage: heap-diff BEFORE.heapsnapshot AFTER.heapsnapshot [--top N]');
  const [before, after] = await Promise.all([summarise(beforeFile), summarise(afterFile)]);
  const total = (groups: Map<string, Totals>): number => [...groups.values()].reduce((sum, t) => sum + t.bytes, 0);
  const keys = new Set([...before.keys(), ...after.keys()]);
  const rows = [...keys].map((key) => {
    const b = before.get(key) ?? { count: 0, bytes: 0 };
    const a = after.get(key) ?? { count: 0, bytes: 0 };
    return { key, count: a.count - b.count, bytes: a.bytes - b.bytes, afterBytes: a.bytes };
  });
  rows.sort((x, y) => Math.abs(y.bytes) - Math.abs(x.bytes));
  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2);
  const lines = [
    `heap: ${mib(total(before))} MiB -> ${mib(total(after))} MiB (${total(after) - total(before) >= 0 ? '+' : ''}${((total(after) - total(before)) / 1024).toFixed(0)} KiB)`,
    '',
    '| group | count change | bytes change | bytes after |',
    '|---|---:|---:|---:|',
    ...rows.slice(0, Number(values.top)).map((r) => `| ${r.key.replaceAll('|', '\\|').slice(0, 80)} | ${r.count >= 0 ? '+' : ''}${r.count} | ${r.bytes >= 0 ? '+' : ''}${r.bytes} | ${r.afterBytes} |`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`heap-diff: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
