/**
 * A strict, test-side parser of the Prometheus text format 0.0.4: turns an exposition into metadata and a
 * multiset of samples, so two expositions can be compared by meaning rather than by bytes. Throws on any
 * line it cannot read, which makes it a format check too.
 */

export interface FamilyMetadata {
  help?: string;
  type?: string;
  unit?: string;
}

export interface Sample {
  readonly name: string;
  /** Label pairs in the order written. */
  readonly labels: ReadonlyArray<readonly [string, string]>;
  /** As written: `+Inf`, `NaN`, `0.005`, … */
  readonly value: string;
  readonly timestamp?: string;
}

export interface ParsedExposition {
  readonly metadata: Map<string, FamilyMetadata>;
  readonly samples: Sample[];
  /** Comment lines other than HELP/TYPE/UNIT, e.g. `# no registered metrics`. */
  readonly comments: string[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
// Upstream does not prefix label names that start with a digit; accept them so the comparison can run.
const LABEL_NAME = /^[a-zA-Z0-9_]+/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const FLOAT = /^(?:[+-]?Inf|NaN|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/;
const INT = /^-?\d+$/;

function unescapeHelp(text: string, line: number): string {
  return text.replace(/\\([\s\S])?/g, (whole, ch: string | undefined) => {
    if (ch === '\\') return '\\';
    if (ch === 'n') return '\n';
    throw new Error(`line ${line}: bad escape ${JSON.stringify(whole)} in HELP`);
  });
}

function parseLabels(text: string, start: number, line: number): { labels: Array<[string, string]>; end: number } {
  const labels: Array<[string, string]> = [];
  let i = start;
  const seen = new Set<string>();
  for (;;) {
    if (text[i] === '}') return { labels, end: i + 1 };
    const nameMatch = LABEL_NAME.exec(text.slice(i));
    if (nameMatch === null) throw new Error(`line ${line}: bad label name at ${i}`);
    const name = nameMatch[0];
    if (seen.has(name)) throw new Error(`line ${line}: duplicate label ${name}`);
    seen.add(name);
    i += name.length;
    if (text[i] !== '=' || text[i + 1] !== '"') throw new Error(`line ${line}: expected =" after ${name}`);
    i += 2;
    let value = '';
    for (;;) {
      const ch = text[i];
      if (ch === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (ch === '"') break;
      if (ch === '\\') {
        const next = text[i + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`line ${line}: bad escape \\${next ?? ''} in label value`);
        i += 2;
      } else {
        value += ch;
        i += 1;
      }
    }
    i += 1;
    labels.push([name, value]);
    if (text[i] === ',') i += 1;
    else if (text[i] !== '}') throw new Error(`line ${line}: expected , or } after label ${name}`);
  }
}

export function parseExposition(text: string): ParsedExposition {
  const metadata = new Map<string, FamilyMetadata>();
  const samples: Sample[] = [];
  const comments: string[] = [];
  const lines = text.split('\n');
  // A final newline leaves one empty element; anything else empty is a blank line (allowed, ignored).
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw === '') return;
    if (raw.startsWith('#')) {
      const match = /^# (HELP|TYPE|UNIT) ([^ ]+)(?: ([\s\S]*))?$/.exec(raw);
      if (match === null) {
        comments.push(raw);
        return;
      }
      const [, kind, name = '', rest = ''] = match;
      if (!METRIC_NAME.test(name) || METRIC_NAME.exec(name)?.[0] !== name) {
        throw new Error(`line ${line}: bad metric name ${JSON.stringify(name)} in ${kind}`);
      }
      const family = metadata.get(name) ?? {};
      metadata.set(name, family);
      if (kind === 'HELP') {
        if (family.help !== undefined) throw new Error(`line ${line}: second HELP for ${name}`);
        family.help = unescapeHelp(rest, line);
      } else if (kind === 'TYPE') {
        if (family.type !== undefined) throw new Error(`line ${line}: second TYPE for ${name}`);
        if (!TYPES.has(rest)) throw new Error(`line ${line}: unknown type ${rest}`);
        family.type = rest;
      } else {
        if (family.unit !== undefined) throw new Error(`line ${line}: second UNIT for ${name}`);
        family.unit = unescapeHelp(rest, line);
      }
      return;
    }
    const nameMatch = METRIC_NAME.exec(raw);
    if (nameMatch === null) throw new Error(`line ${line}: bad sample line ${JSON.stringify(raw.slice(0, 80))}`);
    const name = nameMatch[0];
    let i = name.length;
    let labels: Array<[string, string]> = [];
    if (raw[i] === '{') {
      const parsed = parseLabels(raw, i + 1, line);
      labels = parsed.labels;
      i = parsed.end;
    }
    if (raw[i] !== ' ') throw new Error(`line ${line}: expected a space before the value`);
    const fields = raw.slice(i + 1).split(' ');
    const [value, timestamp, extra] = fields;
    if (value === undefined || !FLOAT.test(value)) throw new Error(`line ${line}: bad value ${String(value)}`);
    if (extra !== undefined) throw new Error(`line ${line}: trailing text`);
    if (timestamp !== undefined && !INT.test(timestamp)) throw new Error(`line ${line}: bad timestamp ${timestamp}`);
    samples.push(timestamp === undefined ? { name, labels, value } : { name, labels, value, timestamp });
  });
  return { metadata, samples, comments };
}

/** Numbers by value (`1e+21` equals `1000000000000000000000`), NaN equal to NaN. */
export function canonicalValue(value: string): string {
  if (value === 'NaN') return 'NaN';
  if (value === '+Inf' || value === 'Inf') return '+Inf';
  if (value === '-Inf') return '-Inf';
  return String(Number(value));
}

/**
 * Samples as a sorted multiset of `name{sorted labels} value [timestamp]` strings: label order and line
 * order do not matter; duplicates do.
 */
export function sampleSet(parsed: ParsedExposition): string[] {
  return parsed.samples
    .map((sample) => {
      const labels = [...sample.labels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const ts = sample.timestamp === undefined ? '' : ' @' + sample.timestamp;
      return `${sample.name}${JSON.stringify(labels)} ${canonicalValue(sample.value)}${ts}`;
    })
    .sort();
}

/** HELP/TYPE/UNIT per family, sorted by name, comparable with `toEqual`. */
export function metadataSet(parsed: ParsedExposition): Array<[string, FamilyMetadata]> {
  return [...parsed.metadata.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A sample with its labels as a record and its value as a number. */
export interface NumericSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of an exposition (parsed strictly, label escapes undone) with numeric values. */
export function parseSamples(text: string): NumericSample[] {
  return parseExposition(text).samples.map((sample) => ({
    name: sample.name,
    labels: Object.fromEntries(sample.labels),
    value: Number(sample.value),
  }));
}

export interface HistogramSeries {
  readonly count: number;
  readonly sum: number;
  /** Cumulative count per `le` bound, as the text has it (`+Inf` included). */
  readonly buckets: ReadonlyMap<string, number>;
}

/** The series of one histogram family, keyed by the value of label `key` (series sharing it are added up). */
export function histogramBy(samples: readonly NumericSample[], family: string, key: string): Map<string, HistogramSeries> {
  const series = new Map<string, { count: number; sum: number; buckets: Map<string, number> }>();
  const get = (labels: Readonly<Record<string, string>>) => {
    const id = labels[key];
    if (id === undefined) throw new Error(`sample of ${family} without label ${key}`);
    let entry = series.get(id);
    if (entry === undefined) {
      entry = { count: 0, sum: 0, buckets: new Map() };
      series.set(id, entry);
    }
    return entry;
  };
  for (const s of samples) {
    if (s.name === `${family}_bucket`) {
      const entry = get(s.labels);
      const le = s.labels['le'];
      if (le === undefined) throw new Error(`bucket of ${family} without le`);
      entry.buckets.set(le, (entry.buckets.get(le) ?? 0) + s.value);
    } else if (s.name === `${family}_count`) {
      get(s.labels).count += s.value;
    } else if (s.name === `${family}_sum`) {
      get(s.labels).sum += s.value;
    }
  }
  return series;
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * The samples whose name starts with `prefix` (a family's `_bucket`, `_sum` and `_count` for its name) as
 * `name{labels}` → value, labels as written minus the `otel_scope_*` ones (not what the tests look at).
 */
export function samples(text: string, prefix: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const sample of parseExposition(text).samples) {
    if (!sample.name.startsWith(prefix)) continue;
    const labels = sample.labels
      .filter(([key]) => !key.startsWith('otel_scope_'))
      .map(([key, value]) => `${key}="${escapeLabelValue(value)}"`)
      .join(',');
    result.set(`${sample.name}{${labels}}`, Number(sample.value));
  }
  return result;
}

/** Sum of the values of the samples named `name` (e.g. every `_count` series of a histogram). */
export function sumSamples(text: string, name: string): number {
  let total = 0;
  for (const sample of parseExposition(text).samples) if (sample.name === name) total += Number(sample.value);
  return total;
}
