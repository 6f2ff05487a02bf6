/**
 * Compile-time guarantees, checked by running the real compiler: the tests themselves type-check, and
 * renaming a column in the table types breaks the build of the query that names it.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

function typecheck(project: string): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('types', () => {
  it('the tests type-check under the strict settings', () => {
    const { status, output } = typecheck(join(packageDir, 'test', 'tsconfig.json'));
    expect(output).toBe('');
    expect(status).toBe(0);
  });

  it('a column renamed in the table types is a compile error in the agents query', () => {
    // A copy of src inside the package, so `kysely` and `@agentconn/core` resolve as usual.
    const copy = mkdtempSync(join(packageDir, '.typecheck-'));
    try {
      cpSync(join(packageDir, 'src'), join(copy, 'src'), { recursive: true });
      writeFileSync(
        join(copy, 'tsconfig.json'),
        JSON.stringify({
          extends: '../../../tsconfig.base.json',
          compilerOptions: { noEmit: true, composite: false, declaration: false, declarationMap: false, customConditions: ['@agentconn/source'] },
          include: ['src'],
        }),
      );
      const unchanged = typecheck(join(copy, 'tsconfig.json'));
      expect(unchanged.output).toBe('');
      expect(unchanged.status).toBe(0);

      const schemaFile = join(copy, 'src', 'schema.ts');
      const schema = readFileSync(schemaFile, 'utf8');
      const renamed = schema.replace('  first_connected_at: NullableTimestamptz;', '  first_connection_at: NullableTimestamptz;');
      expect(renamed).not.toBe(schema);
      writeFileSync(schemaFile, renamed);

      const broken = typecheck(join(copy, 'tsconfig.json'));
      expect(broken.status).not.toBe(0);
      expect(broken.output).toMatch(/src\/queries\/connected-agents\.ts\(\d+,\d+\): error TS\d+:[^\n]*first_connected_at/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
