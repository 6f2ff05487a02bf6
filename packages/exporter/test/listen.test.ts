import { describe, expect, it } from 'vitest';
import { listenAddresses } from '../src/web/http-server.js';

describe('listenAddresses', () => {
  it('an empty host (--listen :PORT) is every interface: both stacks, else IPv4 alone', () => {
    expect(listenAddresses('')).toEqual(['::', '0.0.0.0']);
  });

  it('a host is listened on as given', () => {
    expect(listenAddresses('127.0.0.1')).toEqual(['127.0.0.1']);
    expect(listenAddresses('::1')).toEqual(['::1']);
  });
});
