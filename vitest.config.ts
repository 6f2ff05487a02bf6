import { configDefaults, defineConfig } from 'vitest/config';

const sourceConditions = ['@agentconn/source'];

/** Pure unit tests: no PostgreSQL, no PGlite, no Prometheus server (`pnpm test:unit`). */
const UNIT_TESTS = [
  'packages/core/test/**/*.test.ts',
  'packages/exposition/test/{compression,exposition,exposition-gzip,exposition-http,openmetrics,shared-render}.test.ts',
  'packages/exporter/test/{config,leader-watch,listen,log,readiness,timings}.test.ts',
  'packages/exporter/test/report/format.test.ts',
  'packages/kysely/test/coder-database-error.test.ts',
  'packages/kysely/test/database-url.test.ts',
  'packages/kysely/test/postgres-tls.test.ts',
  'test/{docs,metric-docs}.test.ts',
];

export default defineConfig({
  // Workspace packages resolve to their TypeScript sources in tests (see each package's exports map),
  // so tests never run stale dist/ code. Vitest runs tests in Vite's server (SSR) environment.
  resolve: { conditions: sourceConditions },
  ssr: { resolve: { conditions: sourceConditions, externalConditions: sourceConditions } },
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      // No database and no global state between files: one worker per core reused across files (~30 % faster).
      { extends: true, test: { name: 'unit', include: UNIT_TESTS, isolate: false } },
      {
        extends: true,
        test: {
          // The PGlite and PostgreSQL contract, the adapter's faults, and the end-to-end runs (real exporter
          // processes, a real Prometheus, promtool on the rules).
          name: 'integration',
          include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts', 'bench/test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...UNIT_TESTS],
        },
      },
    ],
  },
});
