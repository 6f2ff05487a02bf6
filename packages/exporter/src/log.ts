import type { LogFields, Logger } from '@agentconn/core';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface JsonLoggerOptions {
  readonly level: LogLevel;
  /** Where lines go. Default: standard error. */
  readonly write?: (line: string) => void;
  /** Applied to every line, e.g. to scrub a password that an error message echoed. */
  readonly scrub?: (line: string) => string;
}

/** One JSON object per line: `{"time":…,"level":…,"msg":…,…fields}`. */
export function createJsonLogger(options: JsonLoggerOptions): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level);
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const scrub = options.scrub ?? ((line: string) => line);
  const emit = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, msg: message };
    for (const [key, value] of Object.entries(fields)) {
      if (key === 'time' || key === 'level' || key === 'msg') record[`field_${key}`] = value;
      else record[key] = value instanceof Error ? value.message : value;
    }
    write(`${scrub(JSON.stringify(record))}\n`);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}
