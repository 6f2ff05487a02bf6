import { redactSecrets } from '@agentconn/kysely';
import { describe, expect, it } from 'vitest';
import { createJsonLogger, type LogLevel } from '../src/log.js';

function capture(level: LogLevel) {
  const lines: Record<string, unknown>[] = [];
  const logger = createJsonLogger({ level, scrub: redactSecrets, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

function failure(): Error {
  const driver = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1 via postgres://u:hunter2@h/db'), { code: 'ECONNREFUSED' });
  return Object.assign(new Error('listing agents failed', { cause: driver }), { code: '08006' });
}

describe('createJsonLogger', () => {
  it('writes an Error as type, message and code; its stack and causes only at debug', () => {
    const info = capture('info');
    info.logger.error('poll failed', { error: 'listing agents failed', err: failure(), interval_s: 1 });
    expect(info.lines).toHaveLength(1);
    expect(info.lines[0]).toEqual({
      time: expect.any(String),
      level: 'error',
      msg: 'poll failed',
      error: 'listing agents failed',
      err: { type: 'Error', message: 'listing agents failed', code: '08006' },
      interval_s: 1,
    });

    const debug = capture('debug');
    debug.logger.error('poll failed', { err: failure() });
    const err = debug.lines[0]?.['err'] as Record<string, unknown>;
    expect(err).toMatchObject({ type: 'Error', message: 'listing agents failed', code: '08006' });
    expect(String(err['stack'])).toMatch(/^Error: listing agents failed\n\s+at /);
    expect(err['cause']).toEqual({
      type: 'Error',
      message: 'connect ECONNREFUSED 127.0.0.1:1 via postgres://u:***@h/db',
      code: 'ECONNREFUSED',
      stack: expect.stringMatching(/^Error: connect ECONNREFUSED 127\.0\.0\.1:1 via postgres:\/\/u:\*\*\*@h\/db\n\s+at /),
    });
    expect(JSON.stringify(debug.lines)).not.toContain('hunter2');
  });

  it('spells out an AggregateError without a message and takes the code of its first inner error', () => {
    const { logger, lines } = capture('info');
    const inner = [
      Object.assign(new Error('connect ECONNREFUSED ::1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    ];
    logger.warn('x', { err: new AggregateError(inner, '') });
    expect(lines[0]?.['err']).toEqual({ type: 'AggregateError', message: 'connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' });
  });

  it.each(['28P01', '42501', '42703', 'ECONNREFUSED', 'EADDRINUSE'])('an error wrapped with context keeps its cause\'s code %s', (code) => {
    const { logger, lines } = capture('info');
    const driver = Object.assign(new Error('driver text'), { code });
    const wrapped = new Error('context: driver text', { cause: new Error('middle', { cause: driver }) });
    logger.error('failed', { err: wrapped });
    expect(lines[0]?.['err']).toEqual({ type: 'Error', message: 'context: driver text', code });
  });

  it('keeps the level threshold, renames reserved keys and scrubs nested strings', () => {
    const { logger, lines } = capture('warn');
    logger.info('hidden', {});
    logger.debug('hidden', {});
    logger.warn('seen postgres://u:pw@h/db', { msg: 'field', nested: { url: 'postgres://u@h/d?password=pw' } });
    expect(lines).toEqual([
      { time: expect.any(String), level: 'warn', msg: 'seen postgres://u:***@h/db', field_msg: 'field', nested: { url: 'postgres://u@h/d?password=***' } },
    ]);
  });
});
