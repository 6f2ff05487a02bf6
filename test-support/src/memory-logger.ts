/** Fields of a log event, as `@agentconn/core`'s `Logger` takes them (typed here so this package needs no workspace dependency). */
export type LogFields = Readonly<Record<string, unknown>>;

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogRecord {
  readonly level: LogLevel;
  readonly message: string;
  /** `{}` when the caller passed none. */
  readonly fields: LogFields;
}

export interface MemoryLogger {
  readonly records: LogRecord[];
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** A logger (structurally `@agentconn/core`'s `Logger`) that keeps every event in `records`, for assertions. */
export function createMemoryLogger(): MemoryLogger {
  const records: LogRecord[] = [];
  const log =
    (level: LogLevel) =>
    (message: string, fields: LogFields = {}): void => {
      records.push({ level, message, fields });
    };
  return { records, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}
