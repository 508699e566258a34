import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.isolated.test.ts'],
          // Two cores: run files in parallel but not more than the machine has.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          // Files that measure latency on purpose (interference during a replay): alone, after the rest,
          // so that other test files do not load the machine while they judge its deadlines.
          name: 'isolated',
          include: ['test/**/*.isolated.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
