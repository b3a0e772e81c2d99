/**
 * The real packrat master, run as a test server: ../shared/realmaster (packrat@3e72655 on
 * cinp-python 0.12, on Debian 12's Django 3.2; its README says what it does). start.sh builds a
 * fresh master in a temp dir on SQLite or PostgreSQL, load.py puts a catalog into it through its
 * own API (an ORM fallback for what its upload refuses), and this module drives it as an
 * operator would: the real `tag`, `fail` and `deprocate` actions as root, and the ORM for what
 * the API has no action for (untag, logging every session out).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { request } from "undici";

const run = promisify(execFile);
/** Debian's interpreter: python3-django and the rest live in its dist-packages. */
const PYTHON = "/usr/bin/python3";

/**
 * Where the real master's sources and scripts are: $PACKRAT_REALMASTER_DIR, else the
 * workplace's shared/realmaster beside this checkout (or at /work/shared, for a clone made
 * elsewhere); null when there is none.
 */
export function realMasterHome(): string | null {
  const fromEnv = process.env.PACKRAT_REALMASTER_DIR;
  if (fromEnv) return fromEnv;
  const beside = fileURLToPath(new URL("../../../shared/realmaster", import.meta.url));
  for (const dir of [beside, "/work/shared/realmaster"]) {
    if (existsSync(path.join(dir, "start.sh"))) return dir;
  }
  return null;
}

export type RealMasterDb = "sqlite" | "pg";

export interface CatalogFile {
  id: number;
  package: string;
  distroversion: string;
  version: string;
  type: string;
  arch: string;
  path: string;
  tags: string[];
}

/** load.py's catalog (../shared/realmaster/README.md). */
export interface Catalog {
  tags?: string[];
  distroversions: Record<
    string,
    { distro: string; version: string | null; file_type: string; release_names?: string }
  >;
  repos: Record<
    string,
    {
      description?: string;
      filesystem_dir: string;
      manager_type: string;
      distroversion_list: string[];
      tag: string;
      show_only_latest?: boolean;
    }
  >;
  mirrors: Record<string, { description?: string; repo_list: string[]; psk?: string }>;
  files: CatalogFile[];
}

export interface LoadReport {
  refused: { kind: string; name: string; why: unknown }[];
  notes: string[];
  /** Catalog id → the PackageFile id the master gave it. */
  id_map: Record<string, number>;
}

export interface CinpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): unknown;
}

export interface RealMaster {
  readonly url: string;
  readonly dir: string;
  readonly db: RealMasterDb;
  /** load.py: tags, distroversions, repos, mirrors through the ORM; files and their tags through the API. */
  load(catalog: Catalog, via?: "api" | "orm"): Promise<LoadReport>;
  /** A CInP request, as root (a superuser) unless `as` is null (anonymous) or other headers. */
  cinp(
    verb: string,
    uri: string,
    opts?: { body?: unknown; headers?: Record<string, string>; as?: "root" | null },
  ): Promise<CinpAnswer>;
  /** The real PackageFile(tag) action as root (NOTIFY on PostgreSQL). */
  tag(fileId: number, tag: string): Promise<void>;
  /** The real PackageFile(fail) / (deprocate) actions as root. */
  fail(fileId: number): Promise<void>;
  deprocate(fileId: number): Promise<void>;
  /** packrat has no untag action: remove the PackageFileTag row as an operator's admin would. */
  untag(fileId: number, tag: string): Promise<void>;
  /** Delete every Django session: every token the agent holds becomes "Invalid Session". */
  logoutEveryone(): Promise<void>;
  /** Run Python with Django set up for this master; returns stdout. */
  orm(code: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startRealMaster(db: RealMasterDb = "sqlite"): Promise<RealMaster> {
  const home = realMasterHome();
  if (home === null) throw new Error("the real packrat master is not available here");
  const parent = await mkdtemp(path.join(tmpdir(), "packrat-realmaster-"));
  // PostgreSQL's initdb runs as the postgres user, which must reach DIR/pg.
  await chmod(parent, 0o755);
  const dir = path.join(parent, "master");
  const env = { ...process.env, REALMASTER_DB: db, REALMASTER_WORKERS: "8" };
  let out: string;
  try {
    ({ stdout: out } = await run("bash", [path.join(home, "start.sh"), dir], {
      env,
      timeout: 120_000,
    }));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    await rm(parent, { recursive: true, force: true }).catch(() => undefined);
    throw new Error(`start.sh failed: ${e.stderr ?? ""}${e.stdout ?? ""}`);
  }
  const vars = Object.fromEntries(
    out
      .split("\n")
      .map((l) => /^(REALMASTER_[A-Z_]+)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!.replace(/^'|'$/g, "")]),
  );
  const url = vars.REALMASTER_URL;
  if (!url) throw new Error(`start.sh printed no REALMASTER_URL:\n${out}`);

  let rootToken: string | null = null;
  const cinp: RealMaster["cinp"] = async (verb, uri, opts = {}) => {
    const headers: Record<string, string> = {
      "CInP-Version": "0.9",
      "Content-Type": "application/json;charset=utf-8",
    };
    if ((opts.as ?? "root") === "root" && !opts.headers?.["Auth-Token"]) {
      rootToken ??= await login("root", "root");
      headers["Auth-Id"] = "root";
      headers["Auth-Token"] = rootToken;
    }
    const res = await request(`${url}${uri}`, {
      method: verb,
      headers: { ...headers, ...opts.headers },
      body: opts.body === undefined ? "" : JSON.stringify(opts.body),
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      headers: res.headers,
      text,
      json: () => JSON.parse(text) as unknown,
    };
  };
  const login = async (username: string, password: string): Promise<string> => {
    const res = await request(`${url}/api/v2/Auth/User(login)`, {
      method: "CALL",
      headers: { "CInP-Version": "0.9", "Content-Type": "application/json;charset=utf-8" },
      body: JSON.stringify({ username, password }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`login as ${username}: ${res.statusCode} ${text}`);
    return JSON.parse(text) as string;
  };
  const action = async (fileId: number, name: string, body: unknown) => {
    const ans = await cinp("CALL", `/api/v2/Package/PackageFile:${fileId}:(${name})`, { body });
    if (ans.status !== 200) throw new Error(`${name} of file ${fileId}: ${ans.status} ${ans.text}`);
  };
  const envFile = await readFile(path.join(dir, "env.sh"), "utf8");
  const pyEnv = Object.fromEntries(
    envFile
      .split("\n")
      .map((l) => /^export ([A-Z_]+)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
  const orm = async (code: string): Promise<string> => {
    const script = `import django\ndjango.setup()\n${code}\n`;
    const { stdout } = await run(PYTHON, ["-c", script], {
      cwd: dir,
      env: { ...process.env, ...pyEnv },
      timeout: 60_000,
    });
    return stdout;
  };

  return {
    url,
    dir,
    db,
    async load(catalog, via = "api") {
      const file = path.join(parent, `catalog-${Date.now()}.json`);
      await writeFile(file, JSON.stringify(catalog));
      const report = path.join(parent, `report-${Date.now()}.json`);
      try {
        await run(
          PYTHON,
          [
            path.join(home, "load.py"),
            "--dir",
            dir,
            "--url",
            url,
            "--catalog",
            file,
            "--via",
            via,
            "--report",
            report,
          ],
          { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 },
        );
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        throw new Error(`load.py failed: ${e.stderr ?? ""}${e.stdout ?? ""}`);
      }
      return JSON.parse(await readFile(report, "utf8")) as LoadReport;
    },
    cinp,
    async tag(fileId, tag) {
      const body: Record<string, string> = { tag: `/api/v2/Attrib/Tag:${tag}:` };
      // setupHelper gives prod change control: its tag action wants a change control id.
      if (tag === "prod") body.change_control_id = "packrat-agent-test";
      await action(fileId, "tag", body);
    },
    fail: (fileId) => action(fileId, "fail", {}),
    deprocate: (fileId) => action(fileId, "deprocate", {}),
    async untag(fileId, tag) {
      await orm(
        "from packrat.Package.models import PackageFileTag\n" +
          `PackageFileTag.objects.filter(package_file_id=${fileId}, tag_id=${JSON.stringify(tag)}).delete()`,
      );
    },
    async logoutEveryone() {
      await orm(
        "from django.contrib.sessions.models import Session\nSession.objects.all().delete()",
      );
      rootToken = null;
    },
    orm,
    async stop() {
      await run("bash", [path.join(home, "stop.sh"), dir], { timeout: 60_000 }).catch(
        () => undefined,
      );
      await rm(parent, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}
