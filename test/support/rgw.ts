/**
 * A real single-node Ceph cluster with a RADOS Gateway (S3), started for tests and benchmarks
 * from Debian 12's `ceph-mon ceph-osd radosgw ceph-common` (Ceph 16 "pacific"). One monitor, one
 * bluestore OSD on a sparse file, one radosgw with the beast frontend; no mgr, no systemd, no
 * /etc/ceph, no /var/lib/ceph: the config, keyring, data, logs and pid files all live in one temp
 * dir, and every daemon is stopped by its PID. The dir also holds `rgw.json`, so another process
 * (a test worker under the vitest globalSetup that started it) can `attachRgw(dir)` and kill and
 * restart radosgw or ask `radosgw-admin` without owning the cluster.
 *
 * Traps, met on this kind of machine (those marked "trial" come from the issue's trial and were
 * not met again here):
 * - cephx is required: with `auth … required = none` radosgw loops in AUTH_CONNECTING to the
 *   monitor and never answers.
 * - Ports are picked free, never the defaults (mon 3300/6789, rgw 7480): a second cluster on a
 *   taken default port does not fail fast, it retries for ~30 s first (trial).
 * - The monitor commits a map change once per `paxos_propose_interval` (1 s by default), and
 *   radosgw creates its pools and sets each one's application one map epoch at a time: ~16 s
 *   to ready. At 0.05 s it is 7-10 s.
 * - memstore never gives memory back (GBs after heavy writes, trial); bluestore on a sparse
 *   file is used here.
 * - No mgr: `ceph -s` says HEALTH_WARN and `rados df` would hang asking for one (trial); ask
 *   `radosgw-admin bucket stats` instead (`bucketStats`).
 * - Pools must be size 1 on one OSD (`mon_allow_pool_size_one`), with the pg autoscaler off (it
 *   lives in the mgr) and few PGs each.
 * - The monitor stops itself when its disk falls below `mon_data_avail_crit` (5 % free): set low
 *   here, since a CI disk may well be that full.
 * - `ceph-osd --mkfs` needs no monitor with `--no-mon-config`, so it runs while the monitor
 *   starts; `-f` keeps each daemon in the foreground, so the PID we spawn is the daemon's.
 * - Ceph daemons take seconds to exit on SIGTERM; a throwaway cluster is stopped with SIGKILL.
 */
import { spawn, execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The binaries a gateway needs (packages ceph-mon, ceph-osd, radosgw, ceph-common). */
export const CEPH_BINARIES = [
  "ceph-mon",
  "ceph-osd",
  "radosgw",
  "radosgw-admin",
  "ceph",
  "monmaptool",
  "openssl",
] as const;

/** The region the gateway's default zonegroup answers to (any name signs; this is the usual). */
export const RGW_REGION = "us-east-1";

/**
 * The virtual-host domain: with `rgw_dns_name` set to it, `BUCKET.s3.localtest` is bucket-style
 * addressing. `.localtest` is not a real TLD; see `privateHostsCommand` to make names resolve.
 */
export const RGW_DNS_NAME = "s3.localtest";

/** Null when every binary is on PATH, else the first missing one. */
export function missingCephBinary(): string | null {
  const dirs = (process.env.PATH ?? "/usr/bin:/bin").split(":");
  for (const bin of CEPH_BINARIES) {
    if (!dirs.some((dir) => dir && existsSync(path.join(dir, bin)))) return bin;
  }
  return null;
}

export interface StartRgwOptions {
  /** Also listen with TLS (throwaway CA; the cert covers 127.0.0.1, localhost, s3.localtest and *.s3.localtest). */
  tls?: boolean;
  /**
   * Parent of the cluster dir (default: $PACKRAT_TEST_RGW_PARENT_DIR, else the OS temp dir).
   * bluestore opens its block file with O_DIRECT, which tmpfs before Linux 6.6 refuses
   * (EINVAL from `ceph-osd --mkfs`; not met here, on 6.18): then point this at a disk.
   */
  parentDir?: string;
  /** Size of the OSD's sparse block file in GiB (default 20; only what is written takes disk). */
  blockGiB?: number;
  /** Leave the dir in place after stop() (for a post-mortem of the logs). */
  keepDir?: boolean;
  /** Give up on readiness after this long (default 90 s). */
  readyTimeoutMs?: number;
}

export interface RgwCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** What `rgw.json` in the cluster dir records. */
export interface RgwInfo extends RgwCredentials {
  dir: string;
  /** `http://127.0.0.1:PORT`: path-style S3 and anonymous reads of public-read objects. */
  endpoint: string;
  port: number;
  /** `https://127.0.0.1:PORT` with tls. */
  httpsEndpoint?: string;
  httpsPort?: number;
  /** PEM of the throwaway CA that signed the gateway's certificate (with tls). */
  caCertPath?: string;
  /** `rgw_dns_name`: `BUCKET.<dnsName>` is virtual-host style. */
  dnsName: string;
  region: string;
  /** The S3 user the gateway was started with (uid). */
  uid: string;
  /** PID of the process that started the cluster: when it is gone, the next start reaps it. */
  ownerPid: number;
}

export interface RunningRgw extends RgwInfo {
  /** PID of the radosgw running now (changes on restart); null while it is killed. */
  readonly radosgwPid: number | null;
  /** Kill radosgw (SIGKILL unless told) and wait until it is gone; the cluster stays up. */
  killRadosgw(signal?: NodeJS.Signals): Promise<void>;
  /** Start radosgw again (after killRadosgw) and wait until it answers on every port. */
  startRadosgw(): Promise<void>;
  /** killRadosgw() then startRadosgw(). */
  restartRadosgw(): Promise<void>;
  /** Another S3 user with its own keys (for a second agent, or one with no rights on a bucket). */
  createUser(uid: string): Promise<RgwCredentials>;
  /** `radosgw-admin <args>` against this cluster; stdout. */
  radosgwAdmin(args: readonly string[]): Promise<string>;
  /** `radosgw-admin bucket stats`: objects and bytes the bucket holds (null: no such bucket). */
  bucketStats(bucket: string): Promise<{ objects: number; bytes: number } | null>;
  /**
   * CPU seconds (user + system) the cluster's daemons have used so far: the difference over a
   * run says how busy the gateway was (near wall time x cores: it was the bottleneck).
   */
  daemonCpuSeconds(): number;
  /** Environment for a child that should talk to this gateway with the default user. */
  env(): Record<string, string>;
  /** Kill every daemon of the cluster and remove its dir. Idempotent. */
  stop(): Promise<void>;
}

type Daemon = "mon" | "osd" | "rgw";

/** A free loopback port a moment ago (the daemons cannot listen on 0 and report it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A cephx secret as `ceph-authtool --gen-print-key` makes it: base64 of type (1 = AES, u16),
 * created (u32 s + u32 ns), length (u16 = 16) and 16 random bytes. Made here, not by four
 * spawns of ceph-authtool.
 */
function cephxKey(): string {
  const buf = Buffer.alloc(12 + 16);
  buf.writeUInt16LE(1, 0);
  buf.writeUInt32LE(Math.floor(Date.now() / 1000), 2);
  buf.writeUInt32LE(0, 6);
  buf.writeUInt16LE(16, 10);
  randomBytes(16).copy(buf, 12);
  return buf.toString("base64");
}

/** S3-style keys: 20 upper-case alphanumerics, 40 base64-ish characters. */
function s3Keys(): RgwCredentials {
  const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const bytes = randomBytes(20);
  let accessKeyId = "";
  for (const b of bytes) accessKeyId += alnum[b % alnum.length];
  const secretAccessKey = randomBytes(30).toString("base64").replace(/[+/]/g, "x");
  return { accessKeyId, secretAccessKey };
}

function cephConf(info: RgwInfo, monPort: number, blockGiB: number): string {
  const d = info.dir;
  const frontends = [`beast endpoint=127.0.0.1:${info.port}`];
  if (info.httpsPort !== undefined) {
    frontends.push(
      `ssl_endpoint=127.0.0.1:${info.httpsPort}`,
      `ssl_certificate=${d}/tls/server.pem`,
      `ssl_private_key=${d}/tls/server.key`,
    );
  }
  return `[global]
fsid = ${randomUUID()}
mon host = v2:127.0.0.1:${monPort}
mon initial members = a
public addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = ${d}/keyring
run dir = ${d}/run
admin socket = ${d}/run/$name.asok
pid file = ${d}/run/$name.pid
log file = ${d}/log/$name.log
mon cluster log file = ${d}/log/cluster.log
crash dir = ${d}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
osd crush chooseleaf type = 0
paxos propose interval = 0.05
paxos min wait = 0.01
mon data = ${d}/mon/$id
osd data = ${d}/osd/$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = ${blockGiB * 1024 * 1024 * 1024}
osd memory target = 939524096
rgw data = ${d}/rgw
rgw frontends = ${frontends.join(" ")}
rgw dns name = ${info.dnsName}
`;
}

function keyring(): string {
  const entity = (name: string, caps: Record<string, string>): string =>
    `[${name}]\n\tkey = ${cephxKey()}\n` +
    Object.entries(caps)
      .map(([k, v]) => `\tcaps ${k} = "${v}"\n`)
      .join("");
  return [
    entity("mon.", { mon: "allow *" }),
    entity("client.admin", { mon: "allow *", osd: "allow *", mgr: "allow *" }),
    entity("osd.0", { mon: "allow profile osd", osd: "allow *", mgr: "allow profile osd" }),
    entity("client.rgw.a", { mon: "allow rw", osd: "allow rwx", mgr: "allow rw" }),
  ].join("");
}

/** Throwaway CA and a server certificate for the gateway (EC keys: milliseconds, not seconds). */
async function makeTls(dir: string, dnsName: string): Promise<string> {
  const tls = path.join(dir, "tls");
  await mkdir(tls, { recursive: true });
  const f = (name: string) => path.join(tls, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
    "-days",
    "3",
    "-subj",
    "/CN=packrat test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await run("openssl", [
    "req",
    ...ec,
    "-keyout",
    f("server.key"),
    "-out",
    f("server.csr"),
    "-subj",
    `/CN=${dnsName}`,
  ]);
  await writeFile(
    f("server.ext"),
    `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:${dnsName},DNS:*.${dnsName}\n` +
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-out",
    f("server.pem"),
    "-days",
    "3",
    "-extfile",
    f("server.ext"),
  ]);
  return f("ca.pem");
}

function pidPath(dir: string, daemon: Daemon): string {
  return path.join(dir, "pids", daemon);
}

function readPid(dir: string, daemon: Daemon): number | null {
  try {
    const pid = Number(readFileSync(pidPath(dir, daemon), "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * True while `pid` is a live (not zombie) process started with this cluster's ceph.conf: a PID
 * file from a dead cluster must never make us kill a stranger that got the same PID.
 */
function isOurs(pid: number, dir: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (/^\d+ \(.*\) Z/.test(stat)) return false;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.includes(path.join(dir, "ceph.conf"));
  } catch {
    return false;
  }
}

async function waitFor(what: string, deadlineMs: number, test: () => Promise<boolean> | boolean) {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (await test()) return;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function killDaemon(dir: string, daemon: Daemon, signal: NodeJS.Signals): Promise<void> {
  const pid = readPid(dir, daemon);
  if (pid === null || !isOurs(pid, dir)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  await waitFor(`${daemon} (pid ${pid}) to exit after ${signal}`, 30_000, () => !isOurs(pid, dir));
  await rm(pidPath(dir, daemon), { force: true });
}

/**
 * Start one daemon in the foreground (`-f`), stdout/stderr appended to log/<daemon>.out. Not
 * detached: a Ctrl-C of the test run reaches the daemons too (the dir is reaped by the next
 * startRgw); unref'd, so a test worker that restarted radosgw can still exit.
 */
function spawnDaemon(dir: string, daemon: Daemon, argv: readonly string[]): number {
  const out = openSync(path.join(dir, "log", `${daemon}.out`), "a");
  try {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { stdio: ["ignore", out, out] });
    child.on("error", () => {}); // an exec failure shows as "exited" in the readiness wait
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
    // Written synchronously before anything can ask for it.
    writeFileSync(pidPath(dir, daemon), String(child.pid));
    return child.pid;
  } finally {
    closeSync(out);
  }
}

async function tail(file: string, lines = 30): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function daemonFailure(dir: string, daemon: Daemon, logName: string): Promise<Error> {
  return new Error(
    `${daemon} of the test cluster in ${dir} is not running:\n` +
      `--- log/${daemon}.out\n${await tail(path.join(dir, "log", `${daemon}.out`))}\n` +
      `--- log/${logName}.log\n${await tail(path.join(dir, "log", `${logName}.log`))}`,
  );
}

async function httpAnswers(url: string, caCertPath?: string): Promise<boolean> {
  // node:https with the CA, not fetch: fetch cannot be given a CA per request.
  const { request } = url.startsWith("https:")
    ? await import("node:https")
    : await import("node:http");
  const ca = caCertPath ? readFileSync(caCertPath) : undefined;
  return new Promise((resolve) => {
    const req = request(url, { method: "GET", timeout: 2000, ca }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

function handle(
  info: RgwInfo,
  options: { keepDir: boolean; readyTimeoutMs: number },
): { rgw: RunningRgw; waitForRadosgw: () => Promise<void> } {
  const { dir } = info;
  const conf = path.join(dir, "ceph.conf");
  let stopped = false;

  const radosgwAdmin = async (args: readonly string[]): Promise<string> => {
    const { stdout } = await run("radosgw-admin", ["-c", conf, ...args], {
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  };

  const startRadosgw = async (): Promise<void> => {
    const existing = readPid(dir, "rgw");
    if (existing !== null && isOurs(existing, dir)) return;
    spawnDaemon(dir, "rgw", ["radosgw", "-f", "-c", conf, "-n", "client.rgw.a"]);
    await waitForRadosgw();
  };

  const waitForRadosgw = async (): Promise<void> => {
    const urls = [info.endpoint, ...(info.httpsEndpoint ? [info.httpsEndpoint] : [])];
    await waitFor("radosgw to answer", options.readyTimeoutMs, async () => {
      for (const d of ["mon", "osd", "rgw"] as const) {
        const pid = readPid(dir, d);
        if (pid === null || !isOurs(pid, dir)) {
          throw await daemonFailure(
            dir,
            d,
            d === "rgw" ? "client.rgw.a" : `${d}.${d === "mon" ? "a" : "0"}`,
          );
        }
      }
      for (const url of urls) if (!(await httpAnswers(`${url}/`, info.caCertPath))) return false;
      return true;
    });
  };

  const killRadosgw = (signal: NodeJS.Signals = "SIGKILL") => killDaemon(dir, "rgw", signal);

  const rgw: RunningRgw = {
    ...info,
    get radosgwPid() {
      const pid = readPid(dir, "rgw");
      return pid !== null && isOurs(pid, dir) ? pid : null;
    },
    killRadosgw,
    startRadosgw,
    async restartRadosgw() {
      await killRadosgw();
      await startRadosgw();
    },
    async createUser(uid) {
      const keys = s3Keys();
      await radosgwAdmin([
        "user",
        "create",
        `--uid=${uid}`,
        `--display-name=${uid}`,
        `--access-key=${keys.accessKeyId}`,
        `--secret=${keys.secretAccessKey}`,
      ]);
      return keys;
    },
    radosgwAdmin,
    async bucketStats(bucket) {
      let out: string;
      try {
        out = await radosgwAdmin(["bucket", "stats", `--bucket=${bucket}`]);
      } catch (err) {
        if (/error 2002|No such file|could not get bucket info|NoSuchBucket/i.test(String(err)))
          return null;
        throw err;
      }
      const stats = JSON.parse(out) as {
        usage?: Record<string, { num_objects?: number; size_actual?: number; size?: number }>;
      };
      const main = stats.usage?.["rgw.main"];
      return { objects: main?.num_objects ?? 0, bytes: main?.size ?? 0 };
    },
    daemonCpuSeconds() {
      let ticks = 0;
      for (const d of ["mon", "osd", "rgw"] as const) {
        const pid = readPid(dir, d);
        if (pid === null || !isOurs(pid, dir)) continue;
        // Fields after the ")" of comm: state is [0], utime [11], stime [12] (proc(5)).
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        ticks += Number(fields[11]) + Number(fields[12]);
      }
      return ticks / 100; // USER_HZ is 100 on Linux
    },
    env() {
      return rgwEnv(info);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const d of ["rgw", "osd", "mon"] as const) await killDaemon(dir, d, "SIGKILL");
      if (!options.keepDir) await rm(dir, { recursive: true, force: true });
    },
  };
  return { rgw, waitForRadosgw };
}

/**
 * Clusters whose starter died without stop() (a killed test run): kill their daemons (by PID
 * file, only if still running with that cluster's ceph.conf) and remove their dirs. A cluster
 * whose starter is alive (another test run on this machine) is left alone.
 */
async function reapOrphans(parent: string): Promise<void> {
  let names: string[];
  try {
    names = (await readdir(parent)).filter((n) => n.startsWith("packrat-rgw-"));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = path.join(parent, name);
    let info: RgwInfo;
    try {
      info = JSON.parse(await readFile(path.join(dir, "rgw.json"), "utf8")) as RgwInfo;
    } catch {
      continue; // being created right now, or not ours
    }
    if (info.dir !== dir || !Number.isInteger(info.ownerPid) || processAlive(info.ownerPid))
      continue;
    for (const d of ["rgw", "osd", "mon"] as const) await killDaemon(dir, d, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
}

/** Alive and not a zombie (a killed starter may wait a while for its parent to reap it). */
function processAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * Start a cluster and wait until radosgw answers (over TLS too with `tls`) and the S3 user
 * exists: 7-10 s on two busy cores. Throws with the daemons' log tails when one dies.
 */
export async function startRgw(options: StartRgwOptions = {}): Promise<RunningRgw> {
  const missing = missingCephBinary();
  if (missing)
    throw new Error(
      `${missing} is not installed (apt-get install ceph-mon ceph-osd radosgw ceph-common openssl)`,
    );
  const parent = options.parentDir ?? (process.env.PACKRAT_TEST_RGW_PARENT_DIR || tmpdir());
  await reapOrphans(parent);
  const dir = await mkdtemp(path.join(parent, "packrat-rgw-"));
  const started = Date.now();
  const stopOnFailure = async (err: unknown): Promise<never> => {
    for (const d of ["rgw", "osd", "mon"] as const)
      await killDaemon(dir, d, "SIGKILL").catch(() => {});
    if (!options.keepDir) await rm(dir, { recursive: true, force: true });
    throw err;
  };
  try {
    for (const sub of ["mon/a", "osd/0", "run", "log", "rgw", "pids", "crash"]) {
      await mkdir(path.join(dir, sub), { recursive: true });
    }
    const [monPort, port, httpsPort] = await Promise.all([
      freePort(),
      freePort(),
      options.tls ? freePort() : Promise.resolve(undefined),
    ]);
    const keys = s3Keys();
    const info: RgwInfo = {
      dir,
      endpoint: `http://127.0.0.1:${port}`,
      port,
      ...(httpsPort !== undefined
        ? {
            httpsEndpoint: `https://127.0.0.1:${httpsPort}`,
            httpsPort,
            caCertPath: path.join(dir, "tls", "ca.pem"),
          }
        : {}),
      dnsName: RGW_DNS_NAME,
      region: RGW_REGION,
      uid: "packrat-test",
      ownerPid: process.pid,
      ...keys,
    };
    const conf = path.join(dir, "ceph.conf");
    await writeFile(conf, cephConf(info, monPort, options.blockGiB ?? 20));
    await writeFile(path.join(dir, "keyring"), keyring(), { mode: 0o600 });
    await writeFile(path.join(dir, "rgw.json"), JSON.stringify(info, null, 2) + "\n");
    const osdUuid = randomUUID();

    // The OSD's mkfs (3 s of the 7) needs no monitor: run it beside the monitor's start.
    const mkfsOsd = run("ceph-osd", [
      "-c",
      conf,
      "-i",
      "0",
      "--mkfs",
      "--osd-uuid",
      osdUuid,
      "--no-mon-config",
    ]);
    const tls = options.tls ? makeTls(dir, RGW_DNS_NAME) : Promise.resolve(undefined);
    await run("monmaptool", [
      "--create",
      "--add",
      "a",
      `v2:127.0.0.1:${monPort}`,
      "--fsid",
      /fsid = (\S+)/.exec(await readFile(conf, "utf8"))![1]!,
      path.join(dir, "monmap"),
    ]);
    await run("ceph-mon", ["-c", conf, "--mkfs", "-i", "a", "--monmap", path.join(dir, "monmap")]);
    spawnDaemon(dir, "mon", ["ceph-mon", "-f", "-c", conf, "-i", "a"]);
    // Registers osd.0 in the OSD map (its key is already in the monitor's keyring).
    await run("ceph", ["-c", conf, "--connect-timeout", "30", "osd", "new", osdUuid, "0"]);
    await mkfsOsd;
    spawnDaemon(dir, "osd", ["ceph-osd", "-f", "-c", conf, "-i", "0"]);
    await tls;
    const { rgw, waitForRadosgw } = handle(info, {
      keepDir: options.keepDir ?? false,
      readyTimeoutMs: options.readyTimeoutMs ?? 90_000,
    });
    spawnDaemon(dir, "rgw", ["radosgw", "-f", "-c", conf, "-n", "client.rgw.a"]);
    await waitForRadosgw();
    await rgw.radosgwAdmin([
      "user",
      "create",
      `--uid=${info.uid}`,
      "--display-name=packrat tests",
      `--access-key=${keys.accessKeyId}`,
      `--secret=${keys.secretAccessKey}`,
    ]);
    await writeFile(path.join(dir, "ready"), `${Date.now() - started}\n`);
    return rgw;
  } catch (err) {
    return stopOnFailure(err);
  }
}

/** Milliseconds the last start of the cluster in `dir` took to be ready. */
export function startupMs(dir: string): number | null {
  try {
    return Number(readFileSync(path.join(dir, "ready"), "utf8"));
  } catch {
    return null;
  }
}

/**
 * A handle on a cluster another process started (the globalSetup's), from its dir: kill and
 * restart radosgw, radosgw-admin. `stop()` from here stops the shared cluster for everyone.
 */
export function attachRgw(dir: string): RunningRgw {
  const info = JSON.parse(readFileSync(path.join(dir, "rgw.json"), "utf8")) as RgwInfo;
  return handle(info, { keepDir: false, readyTimeoutMs: 90_000 }).rgw;
}

/** Environment variables the globalSetup exports (see test/support/rgw-global-setup.ts). */
export function rgwEnv(info: RgwInfo): Record<string, string> {
  const env: Record<string, string> = {
    PACKRAT_TEST_S3_DIR: info.dir,
    PACKRAT_TEST_S3_ENDPOINT: info.endpoint,
    PACKRAT_TEST_S3_REGION: info.region,
    PACKRAT_TEST_S3_ACCESS_KEY_ID: info.accessKeyId,
    PACKRAT_TEST_S3_SECRET_ACCESS_KEY: info.secretAccessKey,
    PACKRAT_TEST_S3_DNS_NAME: info.dnsName,
  };
  if (info.httpsEndpoint) env.PACKRAT_TEST_S3_HTTPS_ENDPOINT = info.httpsEndpoint;
  if (info.caCertPath) env.PACKRAT_TEST_S3_CA_CERT = info.caCertPath;
  return env;
}

/**
 * argv that runs `command` with a private /etc/hosts naming `names` as 127.0.0.1, without
 * touching the machine's: a new mount namespace (`unshare -m`, private propagation) in which a
 * copy of /etc/hosts plus those lines is bind-mounted over /etc/hosts. glibc reads /etc/hosts
 * first ("hosts: files dns"), so `BUCKET.s3.localtest` resolves for that process and its
 * children only. Needs root (CAP_SYS_ADMIN) — or, unprivileged, a user namespace (`-r`), where
 * the command then runs as a mapped root. `/etc/hosts` itself may be a bind mount (containers):
 * mounting over it is still fine. `HOSTALIASES` cannot do this: it only maps names without dots.
 */
export async function privateHostsCommand(
  workDir: string,
  names: readonly string[],
  argv: readonly string[],
): Promise<string[]> {
  const hosts = path.join(workDir, "hosts");
  const base = await readFile("/etc/hosts", "utf8").catch(() => "127.0.0.1 localhost\n");
  await writeFile(hosts, `${base.trimEnd()}\n${names.map((n) => `127.0.0.1 ${n}`).join("\n")}\n`);
  const unshare = process.getuid?.() === 0 ? ["unshare", "-m"] : ["unshare", "-r", "-m"];
  return [
    ...unshare,
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind "$0" /etc/hosts && exec "$@"',
    hosts,
    ...argv,
  ];
}

/** The Debian apt-transport-s3 method (package apt-transport-s3). */
export const APT_S3_METHOD = "/usr/lib/apt/methods/s3";

export interface AptS3Method {
  /** Executable to give apt as `Dir::Bin::Methods::s3` (or to drive by its protocol directly). */
  method: string;
  /** The line for a private apt.conf. */
  aptConfig: string;
  /** Its s3auth.conf (AccessKeyId, SecretAccessKey, Region, Endpoint). */
  authConf: string;
}

/**
 * A wrapper around apt-transport-s3 that reaches this gateway, for `deb s3://BUCKET/… suite
 * comp` lines. What the method does and why each piece is needed (read from its source):
 * - It always builds `https://BUCKET.<Endpoint>/key` (virtual-host style, never path style,
 *   never http; bucket names with a dot are refused): so TLS, `rgw_dns_name`, and a name that
 *   resolves. The wrapper runs it in a private mount namespace with its own /etc/hosts
 *   (privateHostsCommand) naming `BUCKET.s3.localtest` for each bucket given.
 * - `Endpoint` may carry a port (`s3.localtest:PORT`); it is signed as the Host header.
 * - It reads /etc/apt/s3auth.conf unless its first argument names another file, and apt runs
 *   methods without arguments: so the wrapper passes a private config as that argument. apt
 *   takes a per-method binary from `Dir::Bin::Methods::s3`, so nothing in /usr/lib/apt changes.
 * - Without AccessKeyId it asks the EC2 metadata service (retrying for a long time): always set.
 * - It verifies TLS with Python's default context, which honours SSL_CERT_FILE: the wrapper
 *   points that at the throwaway CA.
 * - apt runs methods as `_apt` unless APT::Sandbox::User is root; unshare needs root.
 */
export async function aptS3Method(
  rgw: RgwInfo,
  workDir: string,
  buckets: readonly string[],
  credentials: RgwCredentials = rgw,
): Promise<AptS3Method> {
  if (!rgw.httpsPort || !rgw.caCertPath)
    throw new Error("aptS3Method needs a gateway started with tls");
  await mkdir(workDir, { recursive: true });
  const authConf = path.join(workDir, "s3auth.conf");
  await writeFile(
    authConf,
    `AccessKeyId = ${credentials.accessKeyId}\nSecretAccessKey = ${credentials.secretAccessKey}\n` +
      `Region = ${rgw.region}\nEndpoint = ${rgw.dnsName}:${rgw.httpsPort}\n`,
    { mode: 0o600 },
  );
  const argv = await privateHostsCommand(
    workDir,
    buckets.map((b) => `${b}.${rgw.dnsName}`),
    [APT_S3_METHOD, authConf],
  );
  const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const method = path.join(workDir, "s3-method");
  await writeFile(
    method,
    `#!/bin/sh\nexport SSL_CERT_FILE=${sh(rgw.caCertPath)}\nexec ${argv.map(sh).join(" ")}\n`,
    { mode: 0o755 },
  );
  return { method, aptConfig: `Dir::Bin::Methods::s3 "${method}";\n`, authConf };
}
