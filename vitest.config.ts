import { defineConfig } from "vitest/config";

/**
 * Lanes (issue 17): `unit` is pure and fast (no real clients, servers or built CLI;
 * `npm run test:unit`), `fuzz` is the bounded parser fuzzing, `integration` runs the real apt,
 * dnf, pacman, pip, nginx, the real master and the built CLI. `npm test` runs them all.
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests spawn real clients and servers; two cores, so keep forks modest.
    pool: "forks",
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts"] },
      },
      {
        // The bounded fuzz run of every package parser (issue 18; bench/fuzz.ts runs longer).
        extends: true,
        test: { name: "fuzz", include: ["test/fuzz/**/*.test.ts"] },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/real-master/**/*.test.ts"],
          // Builds dist/ once for the tests that spawn the real CLI.
          globalSetup: ["test/support/global-setup.ts"],
        },
      },
    ],
  },
});
