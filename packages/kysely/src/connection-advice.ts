/**
 * What a user changes to get past a connection error, for the errors whose fix is a URL parameter or a
 * server setting: the driver's text says what failed, this says what to set.
 */

/** Node's codes for a certificate chain that does not lead to a trusted CA. */
const UNTRUSTED_CHAIN = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

/** The advice for `error` (or the first of its causes that has one), or undefined. */
export function connectionAdvice(error: unknown, depth = 5): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (UNTRUSTED_CHAIN.has(code)) {
      return "the server's certificate does not lead to a CA this connection trusts: set sslrootcert=PATH to the certificate of the CA that signed it (or sslmode=require to encrypt without verifying)";
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return "the server's certificate does not name the host of the URL: connect by a name the certificate holds, or set sslmode=verify-ca to check the CA only";
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return "the server's certificate is not valid now: renew it on the server";
    if (code === '28P01') return 'the server refused the password: check the password of the URL (or of the password file)';
    if (code === '28000' && /no encryption/i.test(error.message)) {
      return 'the server accepts this login only over TLS: set sslmode=require (or sslmode=verify-full with sslrootcert=PATH)';
    }
  }
  if (error.message === 'The server does not support SSL connections') {
    return 'the server does not offer TLS: set sslmode=disable to connect unencrypted, or turn on ssl in the server';
  }
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const advice = connectionAdvice(inner, depth);
      if (advice !== undefined) return advice;
    }
  }
  return depth > 0 ? connectionAdvice(error.cause, depth - 1) : undefined;
}

/** Node's TLS errors suggest a Node flag; the advice above names the URL parameter instead. */
export function withoutNodeHints(message: string): string {
  return message.replace(/; if the root CA is installed locally, try running Node\.js with --use-system-ca/, '');
}
