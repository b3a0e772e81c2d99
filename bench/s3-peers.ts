/**
 * The established ways to put a repository tree into a bucket, timed against the same RADOS
 * Gateway the agent's S3 target uploads to (issue 22): `s3cmd sync` and `aws s3 sync`, each with
 * its defaults, as an operator runs them after building a repo on disk. Two cases per tool:
 *   cold: the whole tree into an empty bucket;
 *   +1:   one new file added and one small file changed (a new package and the changed index),
 *         then the same sync again: the tool lists the bucket and decides what to send.
 * Each tool works on its own hard-linked copy of the tree (the change replaces the file, never
 * writes through the link) and into its own bucket, and gets throwaway config files through
 * --config / AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE: ~/.s3cfg and ~/.aws are never read.
 * Wall time covers the tool's whole process (its start-up included: that is what a publish
 * step costs), CPU and peak RSS come from GNU time (bench/measure.ts).
 *
 *   node dist/bench/s3-peers.js [--tree DIR | --generate N] [--work DIR] [--tools s3cmd,aws]
 * starts its own gateway (test/support/rgw.ts) and prints the results as JSON. The integrator's
 * side-by-side run calls `runS3Peers` with the agent's published tree and the same gateway.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildPackage } from "./generate.js";
import { runStep, type StepResult } from "./measure.js";
import { haveTool } from "./peers.js";
import { HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startRgw, type RgwInfo } from "../test/support/rgw.js";
import { s3Client } from "../test/support/s3-test.js";

export type S3PeerTool = "s3cmd" | "aws";
export const S3_PEER_TOOLS: readonly S3PeerTool[] = ["s3cmd", "aws"];

export interface S3PeerResult {
  tool: S3PeerTool;
  case: "cold" | "plus1";
  /** Wall seconds of the tool's process. */
  seconds: number;
  /** Objects and bytes this case had to send (cold: the tree; +1: the new and the changed file). */
  objects: number;
  bytes: number;
  objectsPerSec: number;
  mibPerSec: number;
  cpuSeconds: number;
  peakRssMiB: number;
  /** CPU seconds the gateway's daemons spent during the run (when `gatewayCpuSeconds` is given). */
  gatewayCpuSeconds: number | null;
  /** Objects in the tool's bucket afterwards (radosgw-admin when `admin` is given, else a listing). */
  bucketObjects: number | null;
}

export interface PlusOne {
  /** Path (relative to the tree) and bytes of the new file. */
  add: { path: string; bytes: Uint8Array };
  /** Path of an existing small file and its new bytes. */
  change: { path: string; bytes: Uint8Array };
}

export interface RunS3PeersOptions {
  /** The tree to upload (an agent's published root, or makeAptTree's). Never modified. */
  tree: string;
  /** The gateway (endpoint, keys, region); a user with the right to create buckets. */
  gateway: Pick<RgwInfo, "endpoint" | "region" | "accessKeyId" | "secretAccessKey">;
  /** Scratch dir for the link copies and configs (removed at the end). */
  work: string;
  tools?: readonly S3PeerTool[];
  /** Key prefix in each bucket (default none). */
  prefix?: string;
  /** The +1 change (default: a new 2 KiB .deb under pool/ and a line added to the smallest Release/InRelease, else the smallest file). */
  plusOne?: PlusOne;
  /** Bucket name stem: `<stem>-<tool>` (default `peer-<random>`). */
  bucketStem?: string;
  /** Counts the objects in a bucket (e.g. RunningRgw.bucketStats); else null is reported. */
  countObjects?: (bucket: string) => Promise<number | null>;
  /** The gateway's CPU seconds so far (RunningRgw.daemonCpuSeconds), to report its share. */
  gatewayCpuSeconds?: () => number;
  timeoutMs?: number;
}

interface TreeFile {
  rel: string;
  size: number;
}

async function listTree(root: string, rel = ""): Promise<TreeFile[]> {
  const out: TreeFile[] = [];
  for (const entry of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listTree(root, r)));
    else if (entry.isFile()) out.push({ rel: r, size: (await stat(path.join(root, r))).size });
  }
  return out;
}

/** The default +1: a new package file and a changed entry point, as a repo pass makes them. */
function defaultPlusOne(files: readonly TreeFile[]): PlusOne {
  const entryPoints = files.filter((f) => /(^|\/)(InRelease|Release|repomd\.xml)$/.test(f.rel));
  const pool = entryPoints.length > 0 ? entryPoints : files;
  const smallest = [...pool].sort((a, b) => a.size - b.size)[0];
  if (!smallest) throw new Error("the tree is empty");
  return {
    add: {
      path: `pool/main/p/plus-one/plus-one_${Date.now()}_amd64.deb`,
      bytes: randomBytes(2048),
    },
    change: {
      path: smallest.rel,
      bytes: Buffer.concat([randomBytes(Math.max(16, smallest.size)), Buffer.from("\n")]),
    },
  };
}

/** Throwaway configs for both tools, path-style, plain HTTP, no instance metadata. */
async function writeConfigs(
  dir: string,
  gw: RunS3PeersOptions["gateway"],
): Promise<{ s3cmdConfig: string; awsEnv: NodeJS.ProcessEnv }> {
  const url = new URL(gw.endpoint);
  const s3cmdConfig = path.join(dir, "s3cfg");
  await writeFile(
    s3cmdConfig,
    [
      "[default]",
      `access_key = ${gw.accessKeyId}`,
      `secret_key = ${gw.secretAccessKey}`,
      `host_base = ${url.host}`,
      // No %(bucket)s: path-style requests.
      `host_bucket = ${url.host}`,
      `use_https = ${url.protocol === "https:" ? "True" : "False"}`,
      `bucket_location = ${gw.region}`,
      "signature_v2 = False",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const awsConfig = path.join(dir, "aws-config");
  const awsCredentials = path.join(dir, "aws-credentials");
  await writeFile(awsConfig, `[default]\nregion = ${gw.region}\ns3 =\n  addressing_style = path\n`);
  await writeFile(
    awsCredentials,
    `[default]\naws_access_key_id = ${gw.accessKeyId}\naws_secret_access_key = ${gw.secretAccessKey}\n`,
    { mode: 0o600 },
  );
  const awsEnv: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_CONFIG_FILE: awsConfig,
    AWS_SHARED_CREDENTIALS_FILE: awsCredentials,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
    HOME: dir,
  };
  for (const k of [
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
  ]) {
    delete awsEnv[k];
  }
  return { s3cmdConfig, awsEnv: awsEnv };
}

function syncArgv(
  tool: S3PeerTool,
  tree: string,
  target: string,
  endpoint: string,
  s3cmdConfig: string,
): string[] {
  if (tool === "s3cmd") {
    return [
      "s3cmd",
      "--config",
      s3cmdConfig,
      "--no-progress",
      "--quiet",
      "sync",
      `${tree}/`,
      target,
    ];
  }
  return ["aws", "--endpoint-url", endpoint, "--only-show-errors", "s3", "sync", tree, target];
}

function makeBucketArgv(tool: S3PeerTool, bucket: string, endpoint: string, s3cmdConfig: string) {
  return tool === "s3cmd"
    ? ["s3cmd", "--config", s3cmdConfig, "mb", `s3://${bucket}`]
    : ["aws", "--endpoint-url", endpoint, "s3", "mb", `s3://${bucket}`];
}

function result(
  tool: S3PeerTool,
  kind: S3PeerResult["case"],
  step: StepResult,
  objects: number,
  bytes: number,
  bucketObjects: number | null,
  gatewayCpuSeconds: number | null,
): S3PeerResult {
  const seconds = step.ms / 1000;
  return {
    tool,
    case: kind,
    seconds: Number(seconds.toFixed(3)),
    objects,
    bytes,
    objectsPerSec: Number((objects / seconds).toFixed(1)),
    mibPerSec: Number((bytes / 1048576 / seconds).toFixed(2)),
    cpuSeconds: Number((step.cpuMs / 1000).toFixed(2)),
    peakRssMiB: Number((step.rssKb / 1024).toFixed(1)),
    gatewayCpuSeconds: gatewayCpuSeconds === null ? null : Number(gatewayCpuSeconds.toFixed(2)),
    bucketObjects,
  };
}

/**
 * Cold upload and +1 of `tree` with each tool, one after the other (never at once: they would
 * share the gateway's two cores). Throws when a tool is missing or a sync fails.
 */
export async function runS3Peers(options: RunS3PeersOptions): Promise<S3PeerResult[]> {
  const tools = options.tools ?? S3_PEER_TOOLS;
  for (const tool of tools) {
    if (!haveTool(tool)) throw new Error(`${tool} is not installed (apt-get install s3cmd awscli)`);
  }
  const files = await listTree(options.tree);
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  const plusOne = options.plusOne ?? defaultPlusOne(files);
  const stem = options.bucketStem ?? `peer-${randomBytes(3).toString("hex")}`;
  const prefix = options.prefix ? `${options.prefix.replace(/\/+$/, "")}/` : "";
  const endpoint = options.gateway.endpoint;
  await mkdir(options.work, { recursive: true });
  const { s3cmdConfig, awsEnv } = await writeConfigs(options.work, options.gateway);
  const results: S3PeerResult[] = [];
  const s3 = s3Client(options.gateway);
  try {
    for (const tool of tools) {
      const copy = path.join(options.work, `tree-${tool}`);
      await rm(copy, { recursive: true, force: true });
      execFileSync("cp", ["-al", options.tree, copy]);
      const bucket = `${stem}-${tool}`;
      const env = tool === "aws" ? awsEnv : { ...process.env, HOME: options.work };
      await runStep(makeBucketArgv(tool, bucket, endpoint, s3cmdConfig), { env });
      const target = `s3://${bucket}/${prefix}`;
      const argv = syncArgv(tool, copy, target, endpoint, s3cmdConfig);
      const timeoutMs = options.timeoutMs ?? 3_600_000;

      const gwCpu = options.gatewayCpuSeconds;
      let cpuBefore = gwCpu?.() ?? 0;
      const cold = await runStep(argv, { env, timeoutMs });
      const coldGatewayCpu = gwCpu ? gwCpu() - cpuBefore : null;
      if (cold.timedOut) throw new Error(`${tool} sync timed out after ${timeoutMs} ms`);
      const coldObjects = await count(options, bucket);
      if (coldObjects !== null && coldObjects !== files.length) {
        throw new Error(
          `${tool} cold: ${coldObjects} objects in ${bucket}, expected ${files.length}`,
        );
      }
      results.push(
        result(tool, "cold", cold, files.length, totalBytes, coldObjects, coldGatewayCpu),
      );

      const added = path.join(copy, plusOne.add.path);
      await mkdir(path.dirname(added), { recursive: true });
      await writeFile(added, plusOne.add.bytes);
      // Replace, never write through the hard link into the caller's tree.
      const changed = path.join(copy, plusOne.change.path);
      await writeFile(`${changed}.new`, plusOne.change.bytes);
      await rename(`${changed}.new`, changed);
      cpuBefore = gwCpu?.() ?? 0;
      const plus = await runStep(argv, { env, timeoutMs });
      const plusGatewayCpu = gwCpu ? gwCpu() - cpuBefore : null;
      await expectUploaded(s3, tool, bucket, prefix, [plusOne.add, plusOne.change]);
      results.push(
        result(
          tool,
          "plus1",
          plus,
          2,
          plusOne.add.bytes.length + plusOne.change.bytes.length,
          await count(options, bucket),
          plusGatewayCpu,
        ),
      );
      await rm(copy, { recursive: true, force: true });
    }
  } finally {
    s3.destroy();
    await rm(path.join(options.work, "s3cfg"), { force: true });
  }
  return results;
}

/** A +1 that did not upload both files is a failed run, not a fast one. */
async function expectUploaded(
  s3: S3Client,
  tool: S3PeerTool,
  bucket: string,
  prefix: string,
  files: readonly { path: string; bytes: Uint8Array }[],
): Promise<void> {
  for (const file of files) {
    const want = `"${createHash("md5").update(file.bytes).digest("hex")}"`;
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix + file.path }));
    if (head.ETag !== want) {
      throw new Error(
        `${tool} +1: s3://${bucket}/${prefix}${file.path} has ETag ${head.ETag}, expected ${want}`,
      );
    }
  }
}

async function count(options: RunS3PeersOptions, bucket: string): Promise<number | null> {
  return options.countObjects ? options.countObjects(bucket) : null;
}

/**
 * An apt repository tree of N packages from bench/generate.ts's deb set: pool/main/<x>/<name>/
 * files plus dists/bench/{Release,InRelease} and main/binary-amd64/Packages{,.gz}. The index is
 * a real Packages file of the real files; Release is not signed (the upload does not care).
 */
export async function makeAptTree(
  dir: string,
  n: number,
): Promise<{ files: number; bytes: number }> {
  const stanzas: string[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const { entry, bytes: deb } = buildPackage("deb", i);
    const letter = entry.name.startsWith("lib") ? entry.name.slice(0, 4) : entry.name[0]!;
    const rel = `pool/main/${letter}/${entry.name}/${entry.filename}`;
    await mkdir(path.join(dir, path.dirname(rel)), { recursive: true });
    await writeFile(path.join(dir, rel), deb);
    bytes += deb.length;
    stanzas.push(
      `Package: ${entry.name}\nVersion: ${entry.version}\nArchitecture: ${entry.arch}\n` +
        `Filename: ${rel}\nSize: ${deb.length}\n` +
        `SHA256: ${createHash("sha256").update(deb).digest("hex")}\n`,
    );
  }
  const bin = path.join(dir, "dists/bench/main/binary-amd64");
  await mkdir(bin, { recursive: true });
  const packages = Buffer.from(stanzas.join("\n"));
  const gz = gzipSync(packages);
  await writeFile(path.join(bin, "Packages"), packages);
  await writeFile(path.join(bin, "Packages.gz"), gz);
  const sum = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
  const release =
    "Origin: bench\nSuite: bench\nCodename: bench\nArchitectures: amd64\nComponents: main\nSHA256:\n" +
    ` ${sum(packages)} ${packages.length} main/binary-amd64/Packages\n` +
    ` ${sum(gz)} ${gz.length} main/binary-amd64/Packages.gz\n`;
  await writeFile(path.join(dir, "dists/bench/Release"), release);
  await writeFile(path.join(dir, "dists/bench/InRelease"), release);
  bytes += packages.length + gz.length + 2 * release.length;
  return { files: n + 4, bytes };
}

async function main(): Promise<void> {
  process.env.AWS_EC2_METADATA_DISABLED = "true";
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
  const argv = process.argv.slice(2);
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const work = path.resolve(
    get("work") ?? path.join(os.tmpdir(), `packrat-s3-peers-${process.pid}`),
  );
  const tools = (get("tools") ?? S3_PEER_TOOLS.join(","))
    .split(",")
    .filter((t): t is S3PeerTool => (S3_PEER_TOOLS as readonly string[]).includes(t));
  let tree = get("tree");
  const generated = !tree;
  if (!tree) {
    tree = path.join(work, "apt-tree");
    const n = Number(get("generate") ?? "1000");
    const started = performance.now();
    const made = await makeAptTree(tree, n);
    process.stderr.write(
      `apt tree of ${made.files} files (${(made.bytes / 1048576).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
    );
  }
  const started = performance.now();
  const rgw = await startRgw();
  process.stderr.write(`gateway ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  try {
    const results = await runS3Peers({
      tree,
      gateway: rgw,
      work: path.join(work, "peers"),
      tools,
      countObjects: async (bucket) => (await rgw.bucketStats(bucket))?.objects ?? null,
      gatewayCpuSeconds: () => rgw.daemonCpuSeconds(),
    });
    process.stdout.write(JSON.stringify({ tree, results }, null, 2) + "\n");
  } finally {
    await rgw.stop();
    await rm(path.join(work, "peers"), { recursive: true, force: true });
    if (generated) await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  await main();
}
