/**
 * Reads a `--cpu-prof` profile of a tick process and attributes the samples that fall inside the
 * measured ticks: self time by function and by package, so a missed target points at its cause.
 */
import { readFile, writeFile } from 'node:fs/promises';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly selfMs: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly file: string;
  /** Sampled time inside the measured ticks. */
  readonly sampledMs: number;
  readonly ticks: number;
  readonly byPackage: readonly ProfileEntry[];
  readonly byFunction: readonly ProfileEntry[];
}

export async function summariseProfile(file: string, windows: readonly (readonly [number, number])[], top = 25): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const sorted = [...windows].sort((a, b) => a[0] - b[0]);
  const selfByFunction = new Map<string, number>();
  const selfByPackage = new Map<string, number>();
  let total = 0;
  let time = profile.startTime;
  let w = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    time += profile.timeDeltas[i] ?? 0;
    // A sample stands for the interval up to the next one.
    const duration = profile.timeDeltas[i + 1] ?? 0;
    while (w < sorted.length && sorted[w]![1] < time) w++;
    const window = sorted[w];
    if (window === undefined || time < window[0]) continue;
    const node = byId.get(profile.samples[i]!);
    if (node === undefined) continue;
    const frame = node.callFrame;
    if (frame.functionName === '(idle)') continue;
    const fn = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    selfByFunction.set(fn, (selfByFunction.get(fn) ?? 0) + duration);
    const pkg = packageOf(frame.url, frame.functionName);
    selfByPackage.set(pkg, (selfByPackage.get(pkg) ?? 0) + duration);
    total += duration;
  }
  const entries = (map: Map<string, number>): ProfileEntry[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: us / 1000, share: total > 0 ? us / total : 0 }));
  return { file, sampledMs: total / 1000, ticks: windows.length, byPackage: entries(selfByPackage), byFunction: entries(selfByFunction) };
}

export async function writeProfileSummary(summary: ProfileSummary, file: string): Promise<void> {
  const lines = [
    `# ${summary.file}`,
    '',
    `${summary.sampledMs.toFixed(1)} ms sampled inside ${summary.ticks} measured ticks (${(summary.sampledMs / Math.max(1, summary.ticks)).toFixed(2)} ms per tick; idle excluded).`,
    '',
    '| package | self ms / tick | share |',
    '|---|---:|---:|',
    ...summary.byPackage.map((e) => `| ${e.name} | ${(e.selfMs / Math.max(1, summary.ticks)).toFixed(3)} | ${(e.share * 100).toFixed(1)}% |`),
    '',
    '| function | self ms / tick | share |',
    '|---|---:|---:|',
    ...summary.byFunction.map((e) => `| \`${e.name}\` | ${(e.selfMs / Math.max(1, summary.ticks)).toFixed(3)} | ${(e.share * 100).toFixed(1)}% |`),
    '',
  ];
  await writeFile(file, lines.join('\n'));
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const packages = url.indexOf('/packages/');
  if (packages >= 0) return url.slice(packages + 1);
  const bench = url.indexOf('/bench/');
  if (bench >= 0) return url.slice(bench + 1);
  return url;
}

function packageOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const m = /\/packages\/([^/]+)\//.exec(url);
  if (m) return `@agentconn/${m[1]}`;
  if (url.includes('/bench/')) return '@agentconn/bench';
  return url;
}
