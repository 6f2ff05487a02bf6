import type { LogFields, Logger } from '@agentconn/core';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface JsonLoggerOptions {
  readonly level: LogLevel;
  /** Where lines go. Default: standard error. */
  readonly write?: (line: string) => void;
  /** Applied to the message and every string field, e.g. to hide a password an error message echoed. */
  readonly scrub?: (text: string) => string;
}

/** One JSON object per line: `{"time":…,"level":…,"msg":…,…fields}`. */
export function createJsonLogger(options: JsonLoggerOptions): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level);
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const scrub = options.scrub ?? ((line: string) => line);
  const emit = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, msg: scrub(message) };
    for (const [key, value] of Object.entries(fields)) {
      const safe = scrubbed(value instanceof Error ? value.message : value, scrub);
      if (key === 'time' || key === 'level' || key === 'msg') record[`field_${key}`] = safe;
      else record[key] = safe;
    }
    write(`${JSON.stringify(record)}\n`);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

function scrubbed(value: unknown, scrub: (text: string) => string): unknown {
  if (typeof value === 'string') return scrub(value);
  if (Array.isArray(value)) return value.map((v: unknown) => scrubbed(v, scrub));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubbed(v, scrub)]));
  }
  return value;
}
