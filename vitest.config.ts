import { defineConfig } from "vitest/config";

// Integration and chaos tests start real nats-server processes and fleets, so each file runs alone (one fork
// at a time) to keep timings on a 2-core machine meaningful. `npm run test:unit` (pure and in-process tests
// only) runs its files in parallel: about 30 s here.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    pool: "forks",
  },
});
