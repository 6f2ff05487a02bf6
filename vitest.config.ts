import { defineConfig } from 'vitest/config';

const sourceConditions = ['@agentconn/source'];

export default defineConfig({
  // Workspace packages resolve to their TypeScript sources in tests (see each package's exports map),
  // so tests never run stale dist/ code. Vitest runs tests in Vite's server (SSR) environment.
  resolve: { conditions: sourceConditions },
  ssr: { resolve: { conditions: sourceConditions, externalConditions: sourceConditions } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts', 'bench/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
