/**
 * vitest globalSetup of the `integration-s3` project: one real RADOS Gateway (with TLS) for the
 * whole run, shared by every S3 test file (test/integration/{rgw,s3}-*.test.ts). vitest runs a
 * project's globalSetup only when one of its files is selected, so other runs never start Ceph.
 *
 * It exports to the tests (and every child they spawn) through process.env, which the forked
 * workers inherit:
 *   PACKRAT_TEST_S3_DIR                 cluster dir (attachRgw(dir): kill/restart radosgw, radosgw-admin)
 *   PACKRAT_TEST_S3_ENDPOINT            http://127.0.0.1:PORT (path style; anonymous public-read GETs)
 *   PACKRAT_TEST_S3_HTTPS_ENDPOINT      https://127.0.0.1:PORT
 *   PACKRAT_TEST_S3_CA_CERT             PEM of the throwaway CA behind the https certificate
 *   PACKRAT_TEST_S3_DNS_NAME            s3.localtest (rgw_dns_name: BUCKET.s3.localtest is virtual-host style)
 *   PACKRAT_TEST_S3_REGION              us-east-1
 *   PACKRAT_TEST_S3_ACCESS_KEY_ID / PACKRAT_TEST_S3_SECRET_ACCESS_KEY   the S3 user's keys
 *   PACKRAT_TEST_S3_STARTUP_MS          how long the cluster took to be ready
 *   PACKRAT_TEST_S3_SKIP                set instead of the above when Ceph is not installed
 * It reads PACKRAT_REQUIRE_RGW (below) and PACKRAT_TEST_RGW_PARENT_DIR (where cluster dirs go).
 * and always AWS_EC2_METADATA_DISABLED=true (the SDK and the aws CLI otherwise probe
 * 169.254.169.254 for credentials and region) and AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED
 * (every @aws-sdk/core of 2026 warns on Node 20 that releases after early 2027 need Node 22).
 *
 * Without Ceph the S3 tests skip with a loud message; with PACKRAT_REQUIRE_RGW=1 (.ci/run sets
 * it) a missing Ceph fails the run instead. A Ceph that is installed but does not start always
 * fails.
 */
import { missingCephBinary, rgwEnv, startRgw, startupMs } from "./rgw.js";

export default async function setup(): Promise<() => Promise<void>> {
  process.env.AWS_EC2_METADATA_DISABLED = "true";
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
  const missing = missingCephBinary();
  if (missing) {
    const why = `${missing} is not installed (apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common)`;
    if (process.env.PACKRAT_REQUIRE_RGW === "1") {
      throw new Error(`PACKRAT_REQUIRE_RGW=1 but no RADOS Gateway can start: ${why}`);
    }
    process.env.PACKRAT_TEST_S3_SKIP = why;
    console.warn(`\n*** WARNING: the S3 integration tests are SKIPPED: ${why} ***\n`);
    return async () => {};
  }
  const rgw = await startRgw({ tls: true });
  const ms = startupMs(rgw.dir);
  Object.assign(process.env, rgwEnv(rgw), { PACKRAT_TEST_S3_STARTUP_MS: String(ms ?? "") });
  console.log(
    `RADOS Gateway ready in ${((ms ?? 0) / 1000).toFixed(1)} s: ${rgw.endpoint} (${rgw.dir})`,
  );
  return () => rgw.stop();
}
