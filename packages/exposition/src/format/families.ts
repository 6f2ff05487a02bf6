import type { Attributes } from '@opentelemetry/api';
import { DataPointType, type MetricData, type ResourceMetrics, type ScopeMetrics } from '@opentelemetry/sdk-metrics';
import { diagLogger, type Logger } from '../logger.js';
import { escapeHelp, sanitizeName } from './text-syntax.js';

/** What decides which families a scrape holds and which labels every sample gets (upstream's options). */
export interface FamilyOptions {
  /** Prepended to every metric name as `prefix_` (not to `target_info`). Default none. */
  readonly prefix?: string;
  /** Resource attributes whose key matches become labels on every sample. Default none. */
  readonly withResourceConstantLabels?: RegExp;
  /** Leave out the `otel_scope_name`, `otel_scope_version` (and `otel_scope_schema_url`) labels. Default false. */
  readonly withoutScopeInfo?: boolean;
  /** Leave out the `target_info` series built from the resource. Default false. */
  readonly withoutTargetInfo?: boolean;
  /** Where metadata conflicts and unsupported data are reported. Default: OpenTelemetry `diag`. */
  readonly logger?: Logger;
}

export type PrometheusType = 'counter' | 'gauge' | 'histogram' | 'untyped';

export interface FamilyMember {
  readonly metric: MetricData;
  readonly scope: ScopeMetrics['scope'];
}

export interface Family {
  help: string;
  unit: string;
  readonly type: PrometheusType;
  /** Set when two instruments map to one name with different types: upstream then drops the whole family. */
  dropped: boolean;
  readonly members: FamilyMember[];
}

export const TARGET_INFO = 'target_info';
export const TARGET_INFO_HELP = 'Target metadata';
const ATTR_SCOPE_NAME = 'otel.scope.name';
const ATTR_SCOPE_VERSION = 'otel.scope.version';
const ATTR_SCOPE_SCHEMA_URL = 'otel.scope.schema_url';

function prometheusType(metric: MetricData): PrometheusType {
  switch (metric.dataPointType) {
    case DataPointType.SUM:
      return metric.isMonotonic ? 'counter' : 'gauge';
    case DataPointType.GAUGE:
      return 'gauge';
    case DataPointType.HISTOGRAM:
      return 'histogram';
    default:
      return 'untyped';
  }
}

function quote(value: string): string {
  return JSON.stringify(value);
}

/**
 * The instruments of a `collect()` result grouped into metric families by their Prometheus name, with the
 * conflict rules of `@opentelemetry/exporter-prometheus` 0.301, and the labels each scope adds to its samples.
 * Both text formats write from the same grouping, so they agree on what a scrape contains. One per serializer:
 * it remembers what it warned about, so a problem that repeats on every scrape is logged once.
 */
export class MetricFamilies {
  readonly #prefix: string;
  readonly #resourceLabelPattern: RegExp | undefined;
  readonly #withoutScopeInfo: boolean;
  readonly withoutTargetInfo: boolean;
  readonly #logger: Logger;
  /** Conflicts warned about in the previous grouping: warned once while they persist. */
  #previousConflicts = new Set<string>();
  /** Problems that repeat on every scrape (bad names, unsupported data) are logged once per metric. */
  readonly #warnedOnce = new Set<string>();

  constructor(options: FamilyOptions = {}) {
    this.#prefix = options.prefix ? options.prefix + '_' : '';
    this.#resourceLabelPattern = options.withResourceConstantLabels;
    this.#withoutScopeInfo = options.withoutScopeInfo ?? false;
    this.withoutTargetInfo = options.withoutTargetInfo ?? false;
    this.#logger = options.logger ?? diagLogger;
  }

  /** Groups instruments by their Prometheus name, as upstream does, with its conflict rules. */
  group(resourceMetrics: ResourceMetrics): Map<string, Family> {
    const families = new Map<string, Family>();
    const conflicts = new Set<string>();
    if (!this.withoutTargetInfo) {
      families.set(TARGET_INFO, { help: TARGET_INFO_HELP, unit: '', type: 'gauge', dropped: false, members: [] });
    }
    for (const scopeMetrics of resourceMetrics.scopeMetrics) {
      for (const metric of scopeMetrics.metrics) {
        const name = this.#metricName(metric);
        if (name === undefined) continue;
        const type = prometheusType(metric);
        const family = families.get(name);
        if (family === undefined) {
          families.set(name, {
            help: metric.descriptor.description,
            unit: metric.descriptor.unit,
            type,
            dropped: false,
            members: [{ metric, scope: scopeMetrics.scope }],
          });
        } else if (!family.dropped) {
          if (family.type === type) {
            family.members.push({ metric, scope: scopeMetrics.scope });
          } else {
            this.#warnConflict(conflicts, 'TYPE', name, family.type, type, undefined);
            family.dropped = true;
            family.members.length = 0;
          }
        }
      }
    }
    for (const [name, family] of families) {
      if (family.dropped) continue;
      for (const { metric } of family.members) {
        const { description, unit } = metric.descriptor;
        if (description) {
          if (!family.help) family.help = description;
          else if (family.help !== description) {
            this.#warnConflict(conflicts, 'HELP', name, family.help, description, family.help);
          }
        }
        if (unit) {
          if (!family.unit) family.unit = unit;
          else if (family.unit !== unit) this.#warnConflict(conflicts, 'UNIT', name, family.unit, unit, family.unit);
        }
      }
    }
    this.#previousConflicts = conflicts;
    return families;
  }

  /** The resource attributes that become labels on every sample (`withResourceConstantLabels`), if asked. */
  resourceConstantLabels(attributes: Attributes): Attributes | undefined {
    const pattern = this.#resourceLabelPattern;
    if (pattern === undefined) return undefined;
    const labels: Attributes = {};
    for (const key of Object.keys(attributes)) {
      if (key.match(pattern)) labels[key] = attributes[key];
    }
    return labels;
  }

  /** Scope labels then resource constant labels, in upstream's order (a later key overrides in place). */
  additionalLabels(scope: ScopeMetrics['scope'], resourceLabels: Attributes | undefined): Attributes {
    if (this.#withoutScopeInfo) return resourceLabels ?? {};
    const labels: Attributes = { [ATTR_SCOPE_NAME]: scope.name };
    if (scope.schemaUrl) labels[ATTR_SCOPE_SCHEMA_URL] = scope.schemaUrl;
    if (scope.version) labels[ATTR_SCOPE_VERSION] = scope.version;
    return resourceLabels === undefined ? labels : Object.assign(labels, resourceLabels);
  }

  /** Says once per metric that its data has no text form (an exponential histogram). */
  warnUnsupported(name: string): void {
    if (this.#warnedOnce.has(name)) return;
    this.#warnedOnce.add(name);
    this.#logger.error('Prometheus exposition has no text form for this data point type; only metadata written', {
      metric_name: name,
    });
  }

  #metricName(metric: MetricData): string | undefined {
    const original = metric.descriptor.name;
    let name = this.#prefix + sanitizeName(escapeHelp(original));
    if (name === '' || name === '_') {
      if (!this.#warnedOnce.has(original)) {
        this.#warnedOnce.add(original);
        this.#logger.error('Prometheus metric name is empty or "_" after sanitization; metric dropped', {
          metric_name: original,
        });
      }
      return undefined;
    }
    const first = name.charCodeAt(0);
    if (first >= 48 && first <= 57) name = '_' + name;
    if (metric.dataPointType === DataPointType.SUM && metric.isMonotonic && !name.endsWith('_total')) {
      name += '_total';
    }
    return name;
  }

  #warnConflict(
    current: Set<string>,
    kind: 'TYPE' | 'HELP' | 'UNIT',
    name: string,
    first: string,
    second: string,
    selected: string | undefined,
  ): void {
    const key = `${kind}:${name}:${selected ?? ''}`;
    if (current.has(key)) return;
    current.add(key);
    if (this.#previousConflicts.has(key)) return;
    const values = `${quote(first)}, ${quote(second)}`;
    if (selected === undefined) {
      this.#logger.warn(`Conflicting ${kind} comments for metric "${name}": ${values}; dropping the metric.`, {
        metric_name: name,
      });
    } else {
      this.#logger.warn(
        `Conflicting ${kind} comments for metric "${name}": ${values}; exporting ${quote(selected)}.`,
        { metric_name: name },
      );
    }
  }
}
