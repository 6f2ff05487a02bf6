import type { Attributes } from '@opentelemetry/api';
import { DataPointType, type DataPoint, type Histogram, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { ByteSink, type ChunkOptions, DEFAULT_CHUNK_BYTES } from './byte-sink.js';
import type { ChunkPool } from './chunk-pool.js';
import { MetricFamilies, TARGET_INFO, type Family, type FamilyOptions } from './families.js';
import { writePoints, writeText, type PointWriter } from './line-writers.js';
import { histogramRowsOf } from '../collect/histogram-rows.js';
import { PageTexts, writeHistogramPages } from './page-text-cache.js';
import { seriesTable } from './series-text-cache.js';
import { formatLabels } from './text-syntax.js';

/** What a text format writes at each step of the family walk; the walk decides what is written when. */
export interface FamilyFormat {
  /** The name `family` is written under, or undefined to leave it out of this format. */
  familyName(name: string, family: Family, isTargetInfo: boolean): string | undefined;
  /** `target_info`'s metadata and its one sample; `resourceLabels` is `k="v",…` (empty without attributes). */
  targetInfo(familyName: string, family: Family, resourceLabels: string): string;
  /** A family's `# HELP`, `# TYPE` (and `# UNIT`) lines, before its first member's samples. */
  metadata(familyName: string, family: Family): string;
  /** The writer of a gauge's or counter's points, named `name` (the Prometheus name, with `_total`). */
  samples(name: string, additional: Attributes): PointWriter<DataPoint<number>>;
  /** The writer of a histogram's points. */
  histogram(name: string, additional: Attributes, metric: MetricData): PointWriter<DataPoint<Histogram>>;
  /** The text after the last family; `wroteMetric` is false when no instrument wrote anything. */
  end(wroteMetric: boolean): string;
}

/** What the two text serializers share: the family grouping, and the walk that writes it in their format. */
export abstract class FamilySerializer {
  readonly #families: MetricFamilies;
  /** The text of this serializer's unchanged histogram row pages, kept between renderings. */
  readonly #pageTexts = new PageTexts();

  constructor(options: FamilyOptions) {
    this.#families = new MetricFamilies(options);
  }

  /** The whole exposition as one string (tests, small registries). */
  serialize(resourceMetrics: ResourceMetrics): string {
    return Buffer.concat([...this.chunks(resourceMetrics)]).toString('utf8');
  }

  /**
   * The exposition as UTF-8 chunks of about `chunkBytes` bytes (never splitting a line; a data point larger
   * than that gets a chunk of its own size). Lazy: nothing is written before the first `next()`, so a consumer
   * can pause between chunks for backpressure. Without a `pool` each chunk is a buffer of its own the consumer
   * may keep; with one, the consumer hands each chunk back with `pool.release(chunk)` once done with it. With
   * `recordInputs`, each chunk's inputs can be read with `chunkInputsOf` (what a gzip scrape reuses segments by).
   */
  chunks(
    resourceMetrics: ResourceMetrics,
    chunkBytes: number = DEFAULT_CHUNK_BYTES,
    pool?: ChunkPool,
    options: ChunkOptions = {},
  ): Generator<Buffer, void, undefined> {
    return walkFamilies(this.#families, this.format(), resourceMetrics, chunkBytes, pool, options, this.#pageTexts);
  }

  /** The format's steps for one rendering. */
  protected abstract format(): FamilyFormat;
}

/**
 * Writes one `collect()` result in a text format as UTF-8 chunks of about `chunkBytes` bytes (never splitting a
 * line; a data point larger than that gets a chunk of its own size): the families in upstream's order, each
 * family's metadata before its first member, then every member's points. Lazy: nothing is written before the
 * first `next()`, so a consumer can pause between chunks for backpressure. A histogram with rows reuses the text
 * of its unchanged row pages from `pageTexts` (the serializer's, which fixes the format and options).
 */
export function* walkFamilies(
  families: MetricFamilies,
  format: FamilyFormat,
  resourceMetrics: ResourceMetrics,
  chunkBytes: number,
  pool: ChunkPool | undefined,
  options: ChunkOptions,
  pageTexts: PageTexts = new PageTexts(),
): Generator<Buffer, void, undefined> {
  pageTexts.use();
  const grouped = families.group(resourceMetrics);
  const resourceLabels = families.resourceConstantLabels(resourceMetrics.resource.attributes);
  const sink = new ByteSink(chunkBytes, pool, options);
  let wroteMetric = false;
  for (const [name, family] of grouped) {
    if (family.dropped) continue;
    const isTargetInfo = name === TARGET_INFO && !families.withoutTargetInfo;
    const familyName = format.familyName(name, family, isTargetInfo);
    if (familyName === undefined) continue;
    let writeMetadata = true;
    if (isTargetInfo) {
      yield* writeText(sink, format.targetInfo(familyName, family, formatLabels(resourceMetrics.resource.attributes)));
      writeMetadata = false;
    }
    for (const { metric, scope } of family.members) {
      if (writeMetadata) {
        yield* writeText(sink, format.metadata(familyName, family));
        writeMetadata = false;
        wroteMetric = true;
      } else if (metric.dataPoints.length === 0 || metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) {
        // Nothing to write; upstream also keeps the metadata pending only when it wrote nothing at all.
        if (metric.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) families.warnUnsupported(name);
        continue;
      }
      const additional = families.additionalLabels(scope, resourceLabels);
      switch (metric.dataPointType) {
        case DataPointType.SUM:
        case DataPointType.GAUGE:
          yield* writePoints(sink, format.samples(name, additional), metric.dataPoints, seriesTable(metric.descriptor));
          break;
        case DataPointType.HISTOGRAM: {
          const writer = format.histogram(name, additional, metric);
          const points = metric.dataPoints as DataPoint<Histogram>[];
          const rows = histogramRowsOf(metric);
          yield* rows === undefined
            ? writePoints(sink, writer, points, seriesTable(metric.descriptor))
            : writeHistogramPages(sink, writer, points, seriesTable(metric.descriptor), rows, pageTexts);
          break;
        }
        default:
          families.warnUnsupported(name);
      }
      wroteMetric = true;
    }
  }
  const end = format.end(wroteMetric);
  if (end.length > 0) yield* writeText(sink, end);
  const last = sink.finish();
  if (last !== undefined) yield last;
}
