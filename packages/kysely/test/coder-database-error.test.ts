import { describe, expect, it } from 'vitest';
import { CoderDatabaseError, redactSecrets } from '../src/index.js';
import { rawMessage } from '../src/coder-database-error.js';

describe('error text', () => {
  it('removes passwords from connection URLs and key=value strings', () => {
    expect(redactSecrets('could not parse postgres://coder:hunter2@db.example:5432/coder?sslmode=require')).toBe(
      'could not parse postgres://coder:***@db.example:5432/coder?sslmode=require',
    );
    expect(redactSecrets("host=db user=coder password='hunter 2' dbname=coder")).toBe('host=db user=coder password=*** dbname=coder');
    expect(redactSecrets('postgres://coder@db/coder')).toBe('postgres://coder@db/coder');
  });

  it('spells out an AggregateError from a happy-eyeballs connect', () => {
    const error = new AggregateError(
      [Object.assign(new Error('connect ECONNREFUSED ::1:5432'), { code: 'ECONNREFUSED' }), Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
      '',
    );
    expect(rawMessage(error)).toBe('connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432');
    const wrapped = new CoderDatabaseError('listing agents from the Coder database failed', error);
    expect(wrapped.message).toBe('listing agents from the Coder database failed: connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432');
    expect(wrapped.code).toBe('ECONNREFUSED');
    expect(wrapped.cause).toBe(error);
  });

  it('does not keep an original error whose text carried a credential', () => {
    const original = new Error('bad url postgres://u:pw@h/d');
    const wrapped = new CoderDatabaseError('context', original);
    expect(wrapped.message).toBe('context: bad url postgres://u:***@h/d');
    expect(wrapped.cause).toBeUndefined();
  });
});
