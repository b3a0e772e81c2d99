import { configDefaults, defineConfig } from "vitest/config";

const S3_TESTS = "test/integration/{rgw,s3}-*.test.ts";

/**
 * Lanes (issue 17): `unit` is pure and fast (no real clients, servers or built CLI;
 * `npm run test:unit`), `fuzz` is the bounded parser fuzzing, `integration` runs the real apt,
 * dnf, pacman, pip, nginx, the real master and the built CLI; `integration-s3` the tests
 * against a real RADOS Gateway. `npm test` runs them all.
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
          exclude: [...configDefaults.exclude, S3_TESTS],
          // Builds dist/ once for the tests that spawn the real CLI.
          globalSetup: ["test/support/global-setup.ts"],
        },
      },
      {
        // Integration tests against a real Ceph RADOS Gateway (issue 22): one gateway per run,
        // started only when one of these files is selected (test/support/rgw-global-setup.ts).
        extends: true,
        test: {
          name: "integration-s3",
          include: [S3_TESTS],
          globalSetup: ["test/support/global-setup.ts", "test/support/rgw-global-setup.ts"],
        },
      },
    ],
  },
});
