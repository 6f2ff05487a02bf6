/** A database URL fit for logs: the password replaced by `***`. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    // Not a URL (e.g. a libpq key=value string): hide any password=… pair.
    return url.replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1***');
  }
}

/** The password in a database URL, if any, so that error texts can be scrubbed of it. */
export function databasePassword(url: string): string | undefined {
  try {
    const password = decodeURIComponent(new URL(url).password);
    return password === '' ? undefined : password;
  } catch {
    return /password\s*=\s*('([^']*)'|(\S+))/i.exec(url)?.slice(2).find((p) => p !== undefined);
  }
}

/** Removes every occurrence of a secret from a text (error messages may echo connection strings). */
export function scrubSecret(text: string, secret: string | undefined): string {
  if (secret === undefined || secret.length === 0) return text;
  return text.split(secret).join('***').split(encodeURIComponent(secret)).join('***');
}
