import { defineConfig } from "vitest/config"

// `npm run test:long`: the suites that take longer than `npm test` can afford (a browser, …)
export default defineConfig({
  test: {
    include: ["test/long/**/*.test.ts"],
    testTimeout: 60_000,
    // finds (or starts) PostgreSQL for the long suites that need it, as `npm test` does: test/utils/postgres.ts
    globalSetup: ["test/utils/postgres.global.ts"],
    hookTimeout: 60_000
  }
})
