/**
 * The Prometheus rules and the Grafana dashboard in examples/, checked by promtool: rule syntax, the
 * scrape config, the rule unit tests, every dashboard query, and names that match the metric contract.
 * promtool must be installed (CI installs it): without it these tests fail, they do not skip.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// The contract module itself, not '@agentconn/core': under Vitest that resolves to the package's dist/
// (vitest.config.ts sets resolve.conditions, which the server environment does not read), which is
// missing before a build and stale after an edit.
import { METRIC_DEFINITIONS, START_PHASE_VALUES, prometheusName, type MetricDefinition } from '../packages/core/src/metric.js';
import { describeRun, findPromtool, runPromtool } from '@agentconn/test-support/promtool';

const root = fileURLToPath(new URL('..', import.meta.url));
const prometheusDir = join(root, 'examples', 'prometheus');
const dashboardPath = join(root, 'examples', 'grafana', 'agentconn-dashboard.json');
const ruleFiles = ['recording-rules.yml', 'alert-rules.yml', 'sli-rules.yml', 'start-rules.yml'];
const ruleTestFiles = readdirSync(prometheusDir).filter((name) => name.endsWith('.test.yml')).sort();

const read = (path: string): string => readFileSync(path, 'utf8');

// Prometheus names of what the exporter serves, from the metric definitions.
function exposedNames(definition: MetricDefinition): string[] {
  if (definition.type === 'histogram') return ['_bucket', '_sum', '_count'].map((suffix) => `${definition.name}${suffix}`);
  return [prometheusName(definition)];
}

const servedFamilies = new Map<string, string[]>(METRIC_DEFINITIONS.map((definition) => [definition.name, exposedNames(definition)]));
const servedNames = new Set([...servedFamilies.values()].flat());
/** Each served name (`_bucket`, `_total`…) to its definition, for the label values it may take. */
const definitionOfName = new Map(METRIC_DEFINITIONS.flatMap((definition) => exposedNames(definition).map((name) => [name, definition] as const)));

/**
 * Label values that a selector of ours names but its metric never takes, e.g. `outcome="sucess"` or a
 * poll outcome on the start histogram. Only labels whose definition lists its values are checked.
 */
function unknownLabelValues(expr: string): string[] {
  const problems: string[] = [];
  for (const [, name, matchers] of expr.matchAll(/(?<![\w:])((?:agentconn|coderd_agents)_\w+)\{([^}]*)\}/g)) {
    const labels = definitionOfName.get(name!)?.labels;
    if (labels === undefined || labels === 'series') continue;
    for (const [, key, , value] of matchers!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      const known = labels[key!];
      if (known === undefined || known.length === 0) continue;
      const unknown = value!.split('|').filter((v) => /^[\w.+-]+$/.test(v) && !known.includes(v));
      if (unknown.length > 0) problems.push(`${name}{${key}}: ${unknown.join(', ')} (known: ${known.join(', ')})`);
    }
  }
  return problems;
}

/** Our metric names in a PromQL expression or series selector (not inside level:metric:operation names). */
function ourMetricNames(text: string): string[] {
  return [...text.matchAll(/(?<![\w:])(?:agentconn|coderd_agents)_\w+(?![\w:])/g)].map((m) => m[0]);
}

/** The `expr:` values of a rule or rule-test file: inline scalars and `|` blocks (all this repository writes). */
function yamlExprs(text: string): string[] {
  const lines = text.split('\n');
  const exprs: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const match = /^(\s*)(- )?expr:\s*(.*)$/.exec(lines[i]!);
    if (match === null) continue;
    const keyIndent = match[1]!.length + (match[2] === undefined ? 0 : 2);
    const value = match[3]!.trim();
    if (!/^[|>][-+]?$/.test(value)) {
      exprs.push(unquote(value));
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || indentOf(lines[i + 1]!) > keyIndent)) block.push(lines[++i]!);
    exprs.push(block.join('\n').trim());
  }
  return exprs;
}

/** The `series:` selectors of a rule-test file. */
function yamlSeries(text: string): string[] {
  return [...text.matchAll(/^\s*- series:\s*(.+)$/gm)].map((m) => unquote(m[1]!.trim()));
}

function unquote(value: string): string {
  if (value.startsWith("'") && value.endsWith("'")) return value.slice(1, -1).replaceAll("''", "'");
  if (value.startsWith('"') && value.endsWith('"')) return JSON.parse(value) as string;
  return value;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

interface AlertCase {
  readonly file: string;
  readonly alertname: string;
  readonly evalTime: string;
  readonly firing: boolean;
}

/**
 * The cases of `alert_rule_test` lists, read line by line: an item starts at `- eval_time:`,
 * `- alertname:` or `- exp_alerts:`; `exp_alerts: []` (or none) expects no alert, a list of
 * `- exp_labels:` expects firing ones.
 */
function alertCases(file: string, text: string): AlertCase[] {
  const lines = text.split('\n');
  const cases: AlertCase[] = [];
  let current: { keyIndent: number; alertname?: string; evalTime?: string; firing: boolean } | undefined;
  const flush = (): void => {
    if (current?.alertname !== undefined) {
      cases.push({ file, alertname: current.alertname, evalTime: current.evalTime ?? '?', firing: current.firing });
    }
    current = undefined;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const item = /^(\s*)- (eval_time|alertname|exp_alerts):\s*(.*)$/.exec(line);
    let key: string;
    let value: string;
    if (item !== null) {
      flush();
      current = { keyIndent: item[1]!.length + 2, firing: false };
      key = item[2]!;
      value = item[3]!.trim();
    } else {
      if (current === undefined) continue;
      const field = /^(\s*)(\w+):\s*(.*)$/.exec(line);
      if (indentOf(line) < current.keyIndent) {
        flush();
        continue;
      }
      if (field === null || field[1]!.length !== current.keyIndent) continue;
      key = field[2]!;
      value = field[3]!.trim();
    }
    if (key === 'alertname') current.alertname = unquote(value);
    else if (key === 'eval_time') current.evalTime = value;
    else if (key === 'exp_alerts' && value === '') {
      const next = lines.slice(i + 1).find((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
      current.firing = next !== undefined && /^-\s+exp_(labels|annotations):/.test(next.trim());
    } else if (key === 'exp_alerts' && value !== '[]') {
      throw new Error(`${file}: cannot read "exp_alerts: ${value}" (write [] or a block list)`);
    }
  }
  flush();
  return cases;
}

interface DashboardTarget {
  readonly panel: string;
  readonly refId: string;
  readonly expr: string;
}

interface Panel {
  id?: number;
  type?: string;
  title?: string;
  repeat?: string;
  datasource?: { type?: string; uid?: string } | null;
  targets?: { refId?: string; expr?: string; format?: string; datasource?: { type?: string; uid?: string } }[];
  panels?: Panel[];
}

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

// Sample values for the dashboard's variables and Grafana's built-in ones.
const DASHBOARD_VARIABLE_SAMPLES: Record<string, string> = {
  template: '.*',
  job: 'agentconn',
  __rate_interval: '1m',
  __interval: '1m',
  __range: '1h',
};

function substituteVariables(expr: string): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (whole, braced?: string, bare?: string, old?: string) => {
    const value = DASHBOARD_VARIABLE_SAMPLES[braced ?? bare ?? old ?? ''];
    if (value === undefined) throw new Error(`dashboard expression uses ${whole}, which this test has no sample value for: ${expr}`);
    return value;
  });
}

describe('Prometheus rules and Grafana dashboard in examples/', () => {
  it('has promtool to check them', () => {
    expect(findPromtool()).toMatch(/promtool$/);
  });

  it('passes promtool check rules', async () => {
    const args = ['check', 'rules', '--lint-fatal', ...ruleFiles];
    const result = await runPromtool(args, { cwd: prometheusDir });
    expect(result.code, describeRun(args, result)).toBe(0);
  });

  it('passes promtool check config on the sample prometheus.yml, which loads both rule files', async () => {
    const args = ['check', 'config', 'prometheus.yml'];
    const result = await runPromtool(args, { cwd: prometheusDir });
    expect(result.code, describeRun(args, result)).toBe(0);
    for (const file of ruleFiles) expect(result.stdout).toContain(`Checking ${file}`);
  });

  it('passes promtool test rules', async () => {
    expect(ruleTestFiles).toEqual(expect.arrayContaining(['alert-rules.test.yml', 'recording-rules.test.yml', 'sli-rules.test.yml']));
    const args = ['test', 'rules', ...ruleTestFiles];
    const result = await runPromtool(args, { cwd: prometheusDir });
    expect(result.code, describeRun(args, result)).toBe(0);
  });

  it('tests every alert with a case where it fires and one where it does not', () => {
    const alerts = ruleFiles.flatMap((file) => [...read(join(prometheusDir, file)).matchAll(/^\s*- alert:\s*(\S+)\s*$/gm)].map((m) => m[1]!));
    expect(alerts.length).toBeGreaterThanOrEqual(9);
    const cases = ruleTestFiles.flatMap((file) => alertCases(file, read(join(prometheusDir, file))));

    // A misspelled alertname with `exp_alerts: []` passes promtool without testing anything.
    const unknown = cases.filter((c) => !alerts.includes(c.alertname));
    expect(unknown, 'test cases for alerts that alert-rules.yml does not define').toEqual([]);

    const missing = alerts.flatMap((alert) => {
      const mine = cases.filter((c) => c.alertname === alert);
      return [
        ...(mine.some((c) => c.firing) ? [] : [`${alert}: no case where it fires`]),
        ...(mine.some((c) => !c.firing) ? [] : [`${alert}: no case where it must not fire`]),
      ];
    });
    expect(missing).toEqual([]);
  });

  it('has a dashboard whose every PromQL expression promtool accepts', async () => {
    const dashboard = JSON.parse(read(dashboardPath)) as {
      schemaVersion: number;
      uid: string;
      panels: Panel[];
      templating: { list: { name: string; type: string; multi?: boolean; query?: unknown; definition?: string; datasource?: { uid?: string } }[] };
    };
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);

    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variables.get('template')).toMatchObject({ type: 'query', datasource: { uid: '${datasource}' } });
    expect(variables.get('template')?.definition).toMatch(/template_name\)$/);
    for (const name of Object.keys(DASHBOARD_VARIABLE_SAMPLES).filter((n) => !n.startsWith('__'))) {
      expect(variables.has(name), `variable $${name} is defined`).toBe(true);
    }

    const panels = allPanels(dashboard.panels);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size, 'panel ids are unique').toBe(ids.length);

    const targets: DashboardTarget[] = [];
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      const where = `panel ${panel.id} "${panel.title}"`;
      // Grafana repeats a panel once per selected value of a multi-value variable, and silently not at all otherwise.
      if (panel.repeat !== undefined) expect(variables.get(panel.repeat)?.multi, `${where} repeats over a multi-value variable`).toBe(true);
      expect(panel.datasource?.uid, `${where} uses the datasource variable`).toBe('${datasource}');
      expect(panel.targets?.length ?? 0, `${where} has queries`).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        expect(target.datasource?.uid, `${where} ${target.refId} uses the datasource variable`).toBe('${datasource}');
        expect(typeof target.expr, `${where} ${target.refId} has an expr`).toBe('string');
        targets.push({ panel: `${panel.id}`, refId: target.refId ?? '?', expr: target.expr! });
      }
    }
    // label_values(<selector>, <label>) of query variables: the selector must be valid PromQL too.
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const query = typeof variable.query === 'string' ? variable.query : (variable.query as { query: string }).query;
      const selector = /^label_values\((.+),\s*\w+\)$/.exec(query)?.[1];
      expect(selector, `variable $${variable.name}: ${query}`).toBeDefined();
      targets.push({ panel: `var_${variable.name}`, refId: 'query', expr: selector! });
    }

    expect(panels.some((p) => p.type === 'heatmap' && p.targets?.every((t) => t.format === 'heatmap'))).toBe(true);
    for (const quantile of ['0.5', '0.95', '0.99']) {
      expect(targets.some((t) => t.expr.startsWith(`histogram_quantile(${quantile}, sum(rate(coderd_agents_first_connection_seconds_bucket{`))).toBe(true);
    }

    // promtool parses each expression as a recording rule: a syntax error names the panel and the query.
    const rules = targets.map(
      (t) => `      - record: dashboard:panel_${t.panel}_${t.refId}:check\n        expr: ${JSON.stringify(substituteVariables(t.expr))}\n`,
    );
    const dir = mkdtempSync(join(tmpdir(), 'agentconn-dashboard-'));
    try {
      const file = join(dir, 'dashboard-exprs.yml');
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join('')}`);
      const args = ['check', 'rules', '--lint=none', file];
      const result = await runPromtool(args);
      expect(result.code, describeRun(args, result)).toBe(0);
      expect(result.stdout).toContain(`SUCCESS: ${targets.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names only metrics and label values the exporter serves', () => {
    const dashboard = read(dashboardPath);
    const dashboardExprs = allPanels((JSON.parse(dashboard) as { panels: Panel[] }).panels).flatMap((p) =>
      (p.targets ?? []).map((t) => t.expr ?? ''),
    );
    const sources: [string, string[]][] = [
      ...[...ruleFiles, ...ruleTestFiles].map((file): [string, string[]] => {
        const text = read(join(prometheusDir, file));
        return [file, [...yamlExprs(text), ...yamlSeries(text)]];
      }),
      ['agentconn-dashboard.json', dashboardExprs],
    ];
    const problems: string[] = [];
    for (const [file, exprs] of sources) {
      expect(exprs.length, `${file} has expressions`).toBeGreaterThan(0);
      for (const expr of exprs) {
        // An `instrument` label's value is a metric name, checked below as such, not a series of its own.
        for (const name of ourMetricNames(expr.replace(/instrument=~?"[^"]*"/g, ''))) {
          if (!servedNames.has(name)) problems.push(`${file}: ${name} is not served (in ${expr.split('\n')[0]})`);
        }
        for (const problem of unknownLabelValues(expr)) problems.push(`${file}: ${problem}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('finds a label value that a metric never takes', () => {
    expect(unknownLabelValues('sum(rate(agentconn_polls_total{job="agentconn", outcome=~"success|sucess"}[5m]))')).toEqual([
      'agentconn_polls_total{outcome}: sucess (known: success, error, skipped_not_leader)',
    ]);
    expect(unknownLabelValues('agentconn_samples_dropped_total{reason!="negative_duration"}')).toEqual([]);
  });

  it('stacks the phases of a start in their order, queued at the bottom', () => {
    const panels = allPanels((JSON.parse(read(dashboardPath)) as { panels: Panel[] }).panels);
    const stacked = panels.filter((p) => (p.targets ?? []).some((t) => /agentconn_workspace_start_phase_seconds_bucket\{[^}]*phase="/.test(t.expr ?? '')));
    expect(stacked.length).toBeGreaterThanOrEqual(2);
    for (const panel of stacked) {
      const phases = (panel.targets ?? []).flatMap((t) => [.../phase="(\w+)"/.exec(t.expr ?? '')?.slice(1) ?? []]);
      expect(phases, `panel ${panel.id} "${panel.title}"`).toEqual([...START_PHASE_VALUES]);
    }
  });

  it('shows every metric the exporter serves on the dashboard', () => {
    const dashboard = read(dashboardPath);
    const used = new Set(ourMetricNames(dashboard));
    const unused = [...servedFamilies].filter(([, names]) => !names.some((n) => used.has(n))).map(([family]) => family);
    expect(unused).toEqual([]);
  });
});
