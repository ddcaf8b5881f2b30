import { defineConfig } from "vitest/config"

// `npm run test:long`: the suites that take longer than `npm test` can afford (a browser, …)
export default defineConfig({
  test: {
    include: ["test/long/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
