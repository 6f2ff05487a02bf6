import { diag } from '@opentelemetry/api';

export type LogFields = Readonly<Record<string, unknown>>;

/** Structured logger: one line per event, fields as a flat object. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** The default: OpenTelemetry's `diag`, so a host that set up `diag.setLogger` sees our events there. */
export const diagLogger: Logger = {
  debug: (message, fields) => diag.debug(message, fields ?? {}),
  info: (message, fields) => diag.info(message, fields ?? {}),
  warn: (message, fields) => diag.warn(message, fields ?? {}),
  error: (message, fields) => diag.error(message, fields ?? {}),
};

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
