/**
 * What a poller needs to resume after a restart without a hole and without counting anything twice:
 * where its count stood on the source's clock and which agents of the overlap window it already
 * handled. Plain data, free of I/O: the caller decides where it is kept (e.g. a file).
 * It holds agent ids and instants only, no label values and nothing secret.
 */

export const POLLER_STATE_VERSION = 1;

/** An agent of the overlap window that was observed or dropped, so it is not counted again. */
export interface HandledAgent {
  readonly agentId: string;
  /**
   * Epoch µs of its first connection (source clock); null when it could not be read (e.g. `infinity`):
   * such an agent stays handled until the source stops returning it.
   */
  readonly firstConnectedMicros: number | null;
}

/** A timeout the run that saved the state already counted (or ruled out), so it is not counted again. */
export interface CountedTimeout {
  readonly agentId: string;
  /** Epoch µs of `created_at` + the agent's connection timeout (source clock). */
  readonly timedOutMicros: number;
}

export interface PollerState {
  readonly version: typeof POLLER_STATE_VERSION;
  /** The source's clock (epoch ms) at the last successful query. */
  readonly watermarkMs: number;
  /** The source's clock minus the poller's clock at that query, in ms. */
  readonly clockOffsetMs: number;
  /**
   * Epoch ms on the source's clock: every first connection before it was handled by the run that saved
   * this state (counted, or ruled out by its backfill policy); `handled` lists those handled from it on.
   */
  readonly countFromMs: number;
  readonly handled: readonly HandledAgent[];
  /** Timeouts counted from `countFromMs` on (with the awaiting metrics on); absent in older files: none. */
  readonly timeouts?: readonly CountedTimeout[];
  /** Whole-start samples handled from `countFromMs` on (with `--phases`); absent: none. */
  readonly starts?: readonly HandledStartSampleState[];
}

/** A whole-start sample (a build's phase or outcome, a job's stages, a script run) and its instant in epoch µs. */
export interface HandledStartSampleState {
  readonly key: string;
  readonly micros: number;
}

/** A saved state that cannot be used; the message says what is wrong with it. */
export class PollerStateError extends Error {
  override readonly name = 'PollerStateError';
}

/** The state as one line of JSON. */
export function serializePollerState(state: PollerState): string {
  return `${JSON.stringify({
    version: state.version,
    watermark_ms: state.watermarkMs,
    clock_offset_ms: state.clockOffsetMs,
    count_from_ms: state.countFromMs,
    handled: state.handled.map((a) => [a.agentId, a.firstConnectedMicros]),
    ...(state.timeouts !== undefined && { timeouts: state.timeouts.map((t) => [t.agentId, t.timedOutMicros]) }),
    ...(state.starts !== undefined && { starts: state.starts.map((s) => [s.key, s.micros]) }),
  })}\n`;
}

/** Parses what `serializePollerState` wrote; throws a `PollerStateError` naming the first problem. */
export function parsePollerState(text: string): PollerState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PollerStateError(`not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new PollerStateError('not a JSON object');
  const record = value as Record<string, unknown>;
  if (record['version'] !== POLLER_STATE_VERSION) {
    throw new PollerStateError(`version is ${JSON.stringify(record['version']) ?? 'missing'}, expected ${POLLER_STATE_VERSION}`);
  }
  const handledValue = record['handled'];
  if (!Array.isArray(handledValue)) throw new PollerStateError('handled is not a list');
  const handled = handledValue.map((entry: unknown, index): HandledAgent => {
    if (!Array.isArray(entry) || entry.length !== 2) throw new PollerStateError(`handled[${index}] is not [agent_id, first_connected_us]`);
    const [agentId, micros] = entry as [unknown, unknown];
    if (typeof agentId !== 'string' || agentId.length === 0) throw new PollerStateError(`handled[${index}] has no agent id`);
    if (micros !== null && !(typeof micros === 'number' && Number.isFinite(micros))) {
      throw new PollerStateError(`handled[${index}] first connection is neither a number of µs nor null`);
    }
    return { agentId, firstConnectedMicros: micros };
  });
  const timeoutsValue = record['timeouts'];
  if (timeoutsValue !== undefined && !Array.isArray(timeoutsValue)) throw new PollerStateError('timeouts is not a list');
  const timeouts = (timeoutsValue ?? []).map((entry: unknown, index): CountedTimeout => {
    if (!Array.isArray(entry) || entry.length !== 2) throw new PollerStateError(`timeouts[${index}] is not [agent_id, timed_out_us]`);
    const [agentId, micros] = entry as [unknown, unknown];
    if (typeof agentId !== 'string' || agentId.length === 0) throw new PollerStateError(`timeouts[${index}] has no agent id`);
    if (!(typeof micros === 'number' && Number.isFinite(micros))) throw new PollerStateError(`timeouts[${index}] instant is not a number of µs`);
    return { agentId, timedOutMicros: micros };
  });
  const startsValue = record['starts'];
  if (startsValue !== undefined && !Array.isArray(startsValue)) throw new PollerStateError('starts is not a list');
  const starts = (startsValue ?? []).map((entry: unknown, index): HandledStartSampleState => {
    if (!Array.isArray(entry) || entry.length !== 2) throw new PollerStateError(`starts[${index}] is not [key, us]`);
    const [key, micros] = entry as [unknown, unknown];
    if (typeof key !== 'string' || key.length === 0) throw new PollerStateError(`starts[${index}] has no key`);
    if (!(typeof micros === 'number' && Number.isFinite(micros))) throw new PollerStateError(`starts[${index}] instant is not a number of µs`);
    return { key, micros };
  });
  return {
    version: POLLER_STATE_VERSION,
    watermarkMs: instant(record, 'watermark_ms'),
    clockOffsetMs: instant(record, 'clock_offset_ms'),
    countFromMs: instant(record, 'count_from_ms'),
    handled,
    ...(timeoutsValue !== undefined && { timeouts }),
    ...(startsValue !== undefined && { starts }),
  };
}

/** The range of a JS Date, in ms either side of the epoch. */
const MAX_DATE_MS = 8.64e15;

function instant(record: Record<string, unknown>, key: string): number {
  const value = record[key];
  if (typeof value !== 'number' || !Number.isFinite(value) || Math.abs(value) > MAX_DATE_MS) {
    throw new PollerStateError(`${key} is not a number of milliseconds within the Date range`);
  }
  return value;
}
