import { describe, expect, it } from 'vitest';
import { DatabaseUrlError, parseDatabaseUrl, redactDatabaseUrl, redactSecrets, withPassword } from '../src/index.js';

describe('parseDatabaseUrl', () => {
  it.each([
    ['postgres://reader:s3cret@db:5432/coder', 'postgres://reader:***@db:5432/coder'],
    ['postgres://reader@db/coder?password=s3cret&sslmode=require', 'postgres://reader@db/coder?password=***&sslmode=require'],
    ['postgres://reader@db/coder?sslpassword=k3y&sslmode=verify-full', 'postgres://reader@db/coder?sslpassword=***&sslmode=verify-full'],
    ['postgres://reader@db/coder?PassWord=a&pass%77ord=b&pass%57ORD=c', 'postgres://reader@db/coder?PassWord=***&pass%77ord=***&pass%57ORD=***'],
    ['postgres://reader:S3cret%21@db/coder', 'postgres://reader:***@db/coder'],
    ['postgres://reader:p@[::1]:5432/coder', 'postgres://reader:***@[::1]:5432/coder'],
    ['postgres://reader:p@/coder?host=/var/run/postgresql', 'postgres://reader:***@/coder?host=/var/run/postgresql'],
    ['postgres://reader@db/coder?application_name=a@b&password=x@y', 'postgres://reader@db/coder?application_name=a@b&password=***'],
    ['postgresql://u@h/db', 'postgresql://u@h/db'],
  ])('%s is logged as %s', (url, redacted) => {
    expect(parseDatabaseUrl(url)).toEqual({ text: url, redacted });
    expect(redactDatabaseUrl(url)).toBe(redacted);
  });

  it.each([
    ['postgres://u:p@ss@h/db', /'@'/],
    ['postgres://u:12/b@h/db', /'@'/],
    ['postgres://u:1?b@h/db', /'@'/],
    ['postgres://u:pa#ss@h/db', /'#'/],
    ['postgres://u:50%off@h/db', /'%'/],
    ['postgres://u:pa ss@h/db', /space/],
    ['postgres://u:pw@h:99999/db', /does not parse/],
    ['postgres://u:pw@h/db?sslmode=bogus', /sslmode "bogus" is not one of disable, prefer, require, verify-ca, verify-full, no-verify/],
    ['mysql://u:pw@h/db', /scheme "mysql"/],
    ['u:pw@h/db', /not a URL/],
  ])('%s is refused with a message naming the problem, not the password', (url, message) => {
    expect(() => parseDatabaseUrl(url)).toThrow(DatabaseUrlError);
    expect(() => parseDatabaseUrl(url)).toThrow(message);
    try {
      parseDatabaseUrl(url);
    } catch (error) {
      for (const part of ['p@ss', 'ss@h', '12/b', 'pa#ss', '50%off', 'pa ss', ':pw']) expect(String(error)).not.toContain(part);
    }
  });
});

describe('redactSecrets', () => {
  it('hides a one-letter password and nothing else (no substring replacement)', () => {
    const text = 'connect to postgres://pip:p@db.example/app failed: pipe to peer reset';
    expect(redactSecrets(text)).toBe('connect to postgres://pip:***@db.example/app failed: pipe to peer reset');
  });

  it('hides passwords of URLs in running text, also ones a URL parser would split', () => {
    expect(redactSecrets('bad url postgres://u:p@ss#w/x@h/db, retrying')).toBe('bad url postgres://u:***@h/db, retrying');
    expect(redactSecrets('"postgres://u@h/db?x=1&password=hunter2" and key=value password = \'a b\' sslpassword=k PGPASSWORD=z')).toBe(
      '"postgres://u@h/db?x=1&password=***" and key=value password = *** sslpassword=*** PGPASSWORD=***',
    );
    expect(redactSecrets('password authentication failed for user "u"')).toBe('password authentication failed for user "u"');
    expect(redactSecrets('http://127.0.0.1:4318/v1/metrics')).toBe('http://127.0.0.1:4318/v1/metrics');
    expect(redactSecrets('failed (database postgres://u@h/db?password=pw)')).toBe('failed (database postgres://u@h/db?password=***)');
  });
});

describe('the hint of a refused URL', () => {
  it('comes out of redactSecrets as written: its placeholders are no password', () => {
    let message = '';
    try {
      parseDatabaseUrl('reader:pw@db/coder');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE');
    expect(redactSecrets(`--database-url: ${message}`)).toBe(`--database-url: ${message}`);
    // A real password next to the same brackets is still hidden.
    expect(redactSecrets('postgres://USER[:hunter2]@HOST/db')).toBe('postgres://USER[:***@HOST/db');
  });
});

describe('withPassword', () => {
  it.each([
    ['postgres://u:old@h:5432/db?sslmode=disable', 'postgres://u:n%40w%23%25%2F%3A%20x@h:5432/db?sslmode=disable'],
    ['postgres://u@h/db?password=old&application_name=a', 'postgres://u:n%40w%23%25%2F%3A%20x@h/db?application_name=a'],
    ['postgres://h/db?pass%77ord=old', 'postgres://:n%40w%23%25%2F%3A%20x@h/db'],
    ['postgres://u:old@/db?host=/run/pg', 'postgres://u:n%40w%23%25%2F%3A%20x@/db?host=/run/pg'],
  ])('%s with a new password is %s', (url, expected) => {
    const result = withPassword(parseDatabaseUrl(url), 'n@w#%/: x');
    expect(result.text).toBe(expected);
    expect(decodeURIComponent(new URL(result.text.replace('@/', '@h/')).password)).toBe('n@w#%/: x');
    expect(result.redacted).not.toContain('n%40w');
  });
});
