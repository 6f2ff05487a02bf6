import type { LogFields, Logger } from '@agentconn/core';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface JsonLoggerOptions {
  readonly level: LogLevel;
  /** Where lines go. Default: standard error. */
  readonly write?: (line: string) => void;
  /** Applied to the message and every string in the fields (stacks and causes too), e.g. to hide a password. */
  readonly scrub?: (text: string) => string;
}

/** How deep a chain of `cause`s is followed. */
const MAX_CAUSES = 5;

/**
 * One JSON object per line: `{"time":…,"level":…,"msg":…,…fields}`. A field holding an Error (by
 * convention `err`, as pino names it) is written as `{ type, message, code }` (`code`: the SQLSTATE or
 * system error code, its own or its cause's, when there is one); at `debug` also with its `stack` and its `cause`, in the same form.
 */
export function createJsonLogger(options: JsonLoggerOptions): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level);
  const verbose = options.level === 'debug';
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const scrub = options.scrub ?? ((text: string) => text);
  const emit = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, msg: message };
    for (const [key, value] of Object.entries(fields)) {
      const name = key === 'time' || key === 'level' || key === 'msg' ? `field_${key}` : key;
      record[name] = value instanceof Error ? errorObject(value, verbose, MAX_CAUSES) : value;
    }
    write(`${JSON.stringify(scrubbed(record, scrub))}\n`);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

function errorObject(error: Error, verbose: boolean, causes: number): Record<string, unknown> {
  const code = errorCode(error);
  const object: Record<string, unknown> = { type: error.name, message: errorText(error), ...(code !== undefined && { code }) };
  if (!verbose) return object;
  if (error.stack !== undefined) object['stack'] = error.stack;
  const { cause } = error;
  if (cause !== undefined && causes > 0) {
    object['cause'] = cause instanceof Error ? errorObject(cause, verbose, causes - 1) : { message: String(cause) };
  }
  return object;
}

/** The message; for an AggregateError without one (Node's happy-eyeballs connect), its inner messages. */
function errorText(error: Error): string {
  if (error instanceof AggregateError && error.message === '' && error.errors.length > 0) {
    return [...new Set(error.errors.map((e: unknown) => (e instanceof Error ? errorText(e) : String(e))))].join('; ');
  }
  return error.message === '' ? (errorCode(error) ?? error.name) : error.message;
}

/** Its own code, else the first of its inner errors' or its causes': context added around a driver error keeps the driver's code. */
function errorCode(error: Error, depth = MAX_CAUSES): string | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code !== '') return code;
  if (typeof code === 'number') return String(code);
  if (error instanceof AggregateError) {
    for (const inner of error.errors) if (inner instanceof Error && errorCode(inner, depth) !== undefined) return errorCode(inner, depth);
  }
  const { cause } = error;
  return cause instanceof Error && depth > 0 ? errorCode(cause, depth - 1) : undefined;
}

function scrubbed(value: unknown, scrub: (text: string) => string): unknown {
  if (typeof value === 'string') return scrub(value);
  if (Array.isArray(value)) return value.map((v: unknown) => scrubbed(v, scrub));
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubbed(v, scrub)]));
  }
  return value;
}
