import { defineConfig } from "vitest/config";

/**
 * Two lanes (issue 17): `unit` is pure and fast (no real clients, servers or built CLI;
 * `npm run test:unit`), `integration` runs the real apt, dnf, pacman, pip, nginx, the real
 * master and the built CLI. `npm test` runs both.
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
