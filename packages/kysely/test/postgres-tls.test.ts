import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConnectFailure, namingEndpoint } from '../src/connect-failure.js';
import { DatabaseUrlError, databaseEndpoint } from '../src/database-url.js';
import { connectionAdvice, withoutNodeHints } from '../src/connection-advice.js';
import { postgresTlsConfig } from '../src/postgres-tls.js';
import { PreferTlsSocket } from '../src/prefer-tls-socket.js';

const dir = mkdtempSync(join(tmpdir(), 'agentconn-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const ca = file('ca.crt', 'CA PEM');
const none = { env: {}, homeDir: join(dir, 'no-home') };
const config = (url: string, options = none) => postgresTlsConfig(url, options);
const tlsOf = (url: string) => {
  const { ssl } = config(url);
  if (ssl === false) throw new Error('expected TLS');
  return ssl;
};

describe('postgresTlsConfig: sslmode as libpq means it', () => {
  it('disable is no TLS; the URL goes to pg without the TLS parameters', () => {
    expect(config('postgres://u@h/db?sslmode=disable&application_name=x')).toEqual({
      connectionString: 'postgres://u@h/db?application_name=x',
      ssl: false,
      sslmode: 'disable',
    });
    expect(config('postgres://u@h/db?ssl=false').sslmode).toBe('disable');
  });

  it('prefer, and no sslmode at all (as libpq), settles TLS in a stream of its own: pg itself is told no TLS', () => {
    for (const url of ['postgres://u:p%40ss@h:5432/db', 'postgres://u:p%40ss@h:5432/db?sslmode=prefer']) {
      const prefer = config(url);
      expect(prefer).toMatchObject({ connectionString: 'postgres://u:p%40ss@h:5432/db', ssl: false, sslmode: 'prefer' });
      expect(prefer.stream?.()).toBeInstanceOf(PreferTlsSocket);
    }
    expect(config('postgres://u@h/db?sslmode=require').stream).toBeUndefined();
    expect(config('postgres://u@h/db?sslmode=no-verify').stream).toBeUndefined();
  });

  it('require encrypts without verifying; with sslrootcert it verifies the chain, not the host (verify-ca)', () => {
    expect(config('postgres://u@h/db?sslmode=require')).toEqual({ connectionString: 'postgres://u@h/db', ssl: { rejectUnauthorized: false }, sslmode: 'require' });
    const withCa = tlsOf(`postgres://u@h/db?sslmode=require&sslrootcert=${encodeURIComponent(ca)}`);
    expect(withCa).toMatchObject({ ca: 'CA PEM' });
    expect(withCa.rejectUnauthorized).toBeUndefined();
    expect(withCa.checkServerIdentity?.('h', {} as never)).toBeUndefined();
  });

  it('verify-ca checks the chain only; verify-full also the host (Node checks it when checkServerIdentity is its own)', () => {
    const verifyCa = config(`postgres://u@h/db?sslmode=verify-ca&sslrootcert=${ca}`);
    expect(verifyCa.ssl).toMatchObject({ ca: 'CA PEM', checkServerIdentity: expect.any(Function) });
    const verifyFull = config(`postgres://u@h/db?sslmode=verify-full&sslrootcert=${ca}&connect_timeout=5`);
    expect(verifyFull).toEqual({ connectionString: 'postgres://u@h/db?connect_timeout=5', ssl: { ca: 'CA PEM' }, sslmode: 'verify-full' });
  });

  it.each(['verify-ca', 'verify-full'])('%s without sslrootcert fails naming sslrootcert', (mode) => {
    expect(() => config(`postgres://u@h/db?sslmode=${mode}`)).toThrow(DatabaseUrlError);
    expect(() => config(`postgres://u@h/db?sslmode=${mode}`)).toThrow(/add sslrootcert=PATH/);
  });

  it('reads ~/.postgresql/root.crt, postgresql.crt and postgresql.key when the URL names none, as libpq', () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, '.postgresql'), { recursive: true });
    writeFileSync(join(home, '.postgresql', 'root.crt'), 'HOME CA');
    writeFileSync(join(home, '.postgresql', 'postgresql.crt'), 'CLIENT CERT');
    writeFileSync(join(home, '.postgresql', 'postgresql.key'), 'CLIENT KEY');
    expect(postgresTlsConfig('postgres://u@h/db?sslmode=verify-full', { env: {}, homeDir: home }).ssl).toEqual({
      ca: 'HOME CA',
      cert: 'CLIENT CERT',
      key: 'CLIENT KEY',
    });
  });

  it('sslcert, sslkey and sslpassword give the client certificate', () => {
    const cert = file('client.crt', 'CERT');
    const key = file('client.key', 'KEY');
    expect(config(`postgres://u@h/db?sslmode=require&sslcert=${cert}&sslkey=${key}&sslpassword=k3y`).ssl).toEqual({
      cert: 'CERT',
      key: 'KEY',
      passphrase: 'k3y',
      rejectUnauthorized: false,
    });
    expect(() => config(`postgres://u@h/db?sslmode=require&sslcert=${cert}`)).toThrow('a client certificate needs both sslcert and sslkey: add sslkey=PATH');
  });

  it('an unreadable file is named with its parameter', () => {
    expect(() => config('postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt')).toThrow(
      'sslrootcert=/nonexistent/ca.crt: cannot read it (ENOENT)',
    );
  });

  it('sslrootcert=system trusts the system CAs', () => {
    expect(Array.isArray(tlsOf('postgres://u@h/db?sslmode=verify-full&sslrootcert=system').ca)).toBe(true);
  });

  it('PGSSLMODE and PGSSLROOTCERT count when the URL leaves them out, and the URL wins over them', () => {
    const env = { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca };
    expect(postgresTlsConfig('postgres://u@h/db', { env, homeDir: none.homeDir })).toMatchObject({ ssl: { ca: 'CA PEM' }, sslmode: 'verify-full' });
    expect(postgresTlsConfig('postgres://u@h/db?sslmode=disable', { env, homeDir: none.homeDir }).ssl).toBe(false);
    expect(() => postgresTlsConfig('postgres://u@h/db', { env: { PGSSLMODE: 'bogus' }, homeDir: none.homeDir })).toThrow(/^PGSSLMODE=bogus is not one of/);
  });

  it("pg's own no-verify and uselibpqcompat are taken in, not passed on", () => {
    expect(config('postgres://u@h/db?sslmode=no-verify')).toEqual({ connectionString: 'postgres://u@h/db', ssl: { rejectUnauthorized: false }, sslmode: 'no-verify' });
    expect(config('postgres://u@h/db?uselibpqcompat=true&sslmode=require').connectionString).toBe('postgres://u@h/db');
  });
});

describe('connectionAdvice', () => {
  const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  it('names sslrootcert for an untrusted chain, sslmode=verify-ca for a host mismatch', () => {
    expect(connectionAdvice(coded('UNABLE_TO_VERIFY_LEAF_SIGNATURE'))).toMatch(/set sslrootcert=PATH/);
    expect(connectionAdvice(coded('SELF_SIGNED_CERT_IN_CHAIN'))).toMatch(/set sslrootcert=PATH/);
    expect(connectionAdvice(new Error('context', { cause: coded('ERR_TLS_CERT_ALTNAME_INVALID') }))).toMatch(/sslmode=verify-ca/);
    expect(connectionAdvice(new Error('The server does not support SSL connections'))).toMatch(/sslmode=disable/);
    expect(connectionAdvice(coded('28000', 'no pg_hba.conf entry for host "127.0.0.1", user "u", database "d", no encryption'))).toMatch(/sslmode=require/);
    expect(connectionAdvice(coded('ECONNREFUSED'))).toBeUndefined();
  });

  it("drops Node's hint at a Node flag", () => {
    expect(withoutNodeHints('unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca')).toBe(
      'unable to verify the first certificate',
    );
  });
});

describe('naming where a connection went', () => {
  it('databaseEndpoint is HOST:PORT as pg reads the URL', () => {
    expect(databaseEndpoint('postgres://u:p@db.example/coder')).toBe('db.example:5432');
    expect(databaseEndpoint('postgres://u@[::1]:6432/coder')).toBe('[::1]:6432');
    expect(databaseEndpoint('postgres://u@h/coder?host=10.0.0.7&port=5433')).toBe('10.0.0.7:5433');
    expect(databaseEndpoint('postgres://u:p@/coder?host=/var/run/postgresql')).toBe('/var/run/postgresql (port 5432)');
  });

  it("a driver's timeout without host or port becomes one that names them; a text that names them is kept", () => {
    const timeout = new Error('Connection terminated due to connection timeout');
    const named = namingEndpoint(timeout, '10.0.0.7:5432', 5000);
    expect(named).toBeInstanceOf(ConnectFailure);
    expect((named as Error).message).toBe('connecting to 10.0.0.7:5432 timed out after 5 s');
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:5432'), { code: 'ECONNREFUSED' });
    expect(namingEndpoint(refused, '10.0.0.7:5432', 5000)).toBe(refused);
    const auth = namingEndpoint(Object.assign(new Error('password authentication failed for user "u"'), { code: '28P01' }), 'db:5432');
    expect(auth).toMatchObject({ message: 'connecting to db:5432 failed: password authentication failed for user "u"', code: '28P01' });
  });
});
