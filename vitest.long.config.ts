import { defineConfig } from "vitest/config"

// `npm run test:long`: the suites that take longer than `npm test` can afford (a browser, …)
export default defineConfig({
  test: {
    include: ["test/long/**/*.test.ts"],
    // finds (or starts) PostgreSQL for the long suites that need it, as `npm test` does
    globalSetup: ["test/utils/postgres.global.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
