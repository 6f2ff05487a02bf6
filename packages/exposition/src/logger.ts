import { diag } from '@opentelemetry/api';

export type LogFields = Readonly<Record<string, unknown>>;

/**
 * Where the exposition reports collection errors, metadata conflicts and cut responses: one line per event,
 * fields as a flat object. Any object with these four methods will do (a pino or winston child, for one).
 */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** The default: OpenTelemetry's `diag`, so a host that called `diag.setLogger` sees the events there. */
export const diagLogger: Logger = {
  debug: (message, fields) => diag.debug(message, fields ?? {}),
  info: (message, fields) => diag.info(message, fields ?? {}),
  warn: (message, fields) => diag.warn(message, fields ?? {}),
  error: (message, fields) => diag.error(message, fields ?? {}),
};

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
