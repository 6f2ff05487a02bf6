import { connectionAdvice, withoutNodeHints } from './connection-advice.js';
import { redactSecrets } from './secret-redaction.js';

/**
 * The text of an error. `pg` connection errors from Node's happy-eyeballs connect are AggregateErrors
 * with an empty message; their inner errors name the address.
 */
export function rawMessage(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    const inner = [...new Set(error.errors.map(rawMessage))].join('; ');
    return error.message.length > 0 ? `${error.message}: ${inner}` : inner;
  }
  if (error instanceof Error) {
    if (error.message.length > 0) return withoutNodeHints(error.message);
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? code : error.name;
  }
  return String(error);
}

/** The SQLSTATE (`42P01`) or system error code (`ECONNREFUSED`) of an error, if it has one. */
export function errorCode(error: unknown): string | undefined {
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const code = errorCode(inner);
      if (code !== undefined) return code;
    }
  }
  if (error !== null && typeof error === 'object') {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return code;
  }
  return undefined;
}

/**
 * An error of this package: a clear message with context, the driver's error code, what to set when
 * the fix is a URL parameter (e.g. `sslrootcert`), and the original as `cause`.
 */
export class CoderDatabaseError extends Error {
  override readonly name = 'CoderDatabaseError';
  /** SQLSTATE (e.g. `42P01` for a missing table) or system error code (e.g. `ECONNREFUSED`). */
  readonly code: string | undefined;

  constructor(context: string, cause: unknown) {
    const raw = rawMessage(cause);
    const safe = redactSecrets(raw);
    const advice = connectionAdvice(cause);
    // The original stays attached for its stack and fields, unless its text carried a credential.
    super(`${context}: ${safe}${advice === undefined ? '' : `; ${advice}`}`, safe === raw ? { cause } : {});
    this.code = errorCode(cause);
  }
}
