/**
 * vitest globalSetup: build dist/ once, so tests that spawn the real CLI (bin/packrat-agent)
 * run the code under test and `npm test` works on its own after `npm ci`.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  // .ci/run and `npm run check` have just built it (a second tsc run is ~20 s of CI).
  if (process.env.PACKRAT_TEST_DIST_BUILT === "1") return;
  const root = fileURLToPath(new URL("../..", import.meta.url));
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
  // Another project of the same run (integration-s3) need not build it again.
  process.env.PACKRAT_TEST_DIST_BUILT = "1";
}
