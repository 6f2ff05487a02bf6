import { withoutNodeHints } from './connection-advice.js';

/**
 * A failed connection attempt, named by where it went: `pg`'s own texts ("Connection terminated due to
 * connection timeout", a TLS or authentication error) say neither host nor port.
 */
export class ConnectFailure extends Error {
  override readonly name = 'ConnectFailure';
  /** The driver's SQLSTATE or system error code, when it has one. */
  readonly code: string | undefined;

  constructor(endpoint: string, cause: unknown, timeoutMs?: number) {
    const message = withoutNodeHints(cause instanceof Error ? cause.message : String(cause));
    const timedOut = /^(Connection terminated due to connection timeout|timeout exceeded when trying to connect)$/.test(message);
    super(
      timedOut && timeoutMs !== undefined
        ? `connecting to ${endpoint} timed out after ${formatSeconds(timeoutMs)}`
        : `connecting to ${endpoint} failed: ${message === '' ? codeOf(cause) ?? 'error' : message}`,
      { cause },
    );
    this.code = codeOf(cause);
  }
}

/** `error` itself when its text already names `endpoint` (`connect ECONNREFUSED 127.0.0.1:5432`), else a `ConnectFailure`. */
export function namingEndpoint(error: unknown, endpoint: string, timeoutMs?: number): unknown {
  return textOf(error).includes(endpoint) ? error : new ConnectFailure(endpoint, error, timeoutMs);
}

function textOf(error: unknown): string {
  if (error instanceof AggregateError) return [error.message, ...error.errors.map(textOf)].join('; ');
  return error instanceof Error ? error.message : String(error);
}

function codeOf(error: unknown): string | undefined {
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const code = codeOf(inner);
      if (code !== undefined) return code;
    }
  }
  const code = error !== null && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code !== '' ? code : undefined;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
