/**
 * The questions the comparison test asks both the real packrat master and the fake one: every
 * object and call the agent uses, with its errors. Both masters hold the catalog of
 * real-master-catalog.ts; a question names files by catalog file name, so each master's own ids
 * are used.
 */
import { request } from "undici";
import type { MasterClient, PackageFileListing } from "../../src/sync/master-types.js";
import type { RecordedAnswer } from "./cinp-shape.js";
import { E2E_MIRROR, E2E_PSK } from "./real-master-catalog.js";

export interface Question {
  name: string;
  verb: string;
  uri: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Who asks: the mirror's user (a session), nobody, or a session the master does not know. */
  as?: "session" | "anonymous" | "dead-session";
  /** The answer is keyed by object URI (compare by model, not id). */
  multi?: boolean;
}

const repoFilter = (repo: string, packageList: string[] | null) => ({
  repo: `/api/v2/Repo/Repo:${repo}:`,
  package_list: packageList,
});

/** `id(filename)`: that master's PackageFile id of a catalog file. */
export function masterQuestions(id: (filename: string) => number): Question[] {
  const hello = id("hello_1.0-1_all.deb");
  const pending = id("pending_1.0-1_all.deb");
  return [
    { name: "DESCRIBE the API root", verb: "DESCRIBE", uri: "/api/v2/", as: "anonymous" },
    { name: "GET the mirror", verb: "GET", uri: `/api/v2/Repo/Mirror:${E2E_MIRROR}:` },
    { name: "GET a repo", verb: "GET", uri: "/api/v2/Repo/Repo:e2e-apt:" },
    {
      name: "GET two repos",
      verb: "GET",
      uri: "/api/v2/Repo/Repo:e2e-apt:e2e-yum:",
      multi: true,
    },
    {
      name: "LIST distro versions, all at once",
      verb: "LIST",
      uri: "/api/v2/Attrib/DistroVersion",
      headers: { Position: "0", Count: "1000000" },
    },
    { name: "GET a distro version", verb: "GET", uri: "/api/v2/Attrib/DistroVersion:bookworm:" },
    {
      name: "GET a distro version without a version",
      verb: "GET",
      uri: "/api/v2/Attrib/DistroVersion:tar:",
    },
    {
      name: "LIST a repo's files, all at once",
      verb: "LIST",
      uri: "/api/v2/Package/PackageFile",
      headers: { Filter: "repo", Position: "0", Count: "1000000" },
      body: repoFilter("e2e-apt", null),
    },
    {
      name: "LIST a page of a repo's files",
      verb: "LIST",
      uri: "/api/v2/Package/PackageFile",
      headers: { Filter: "repo", Position: "1", Count: "2" },
      body: repoFilter("e2e-apt", null),
    },
    {
      name: "LIST a repo's files of some packages",
      verb: "LIST",
      uri: "/api/v2/Package/PackageFile",
      headers: { Filter: "repo", Position: "0", Count: "1000000" },
      body: repoFilter("e2e-apt", ["hello"]),
    },
    {
      name: "LIST without Count: the default page",
      verb: "LIST",
      uri: "/api/v2/Attrib/DistroVersion",
    },
    {
      name: "GET a package file tagged dev, stage and prod",
      verb: "GET",
      uri: `/api/v2/Package/PackageFile:${hello}:`,
    },
    {
      name: "GET a package file tagged dev and stage",
      verb: "GET",
      uri: `/api/v2/Package/PackageFile:${pending}:`,
    },
    {
      name: "GET package files, multi-object",
      verb: "GET",
      uri: `/api/v2/Package/PackageFile:${hello}:${pending}:`,
      headers: { "Multi-Object": "True" },
      multi: true,
    },
    {
      name: "GET one package file with Multi-Object",
      verb: "GET",
      uri: `/api/v2/Package/PackageFile:${hello}:`,
      headers: { "Multi-Object": "True" },
      multi: true,
    },
    {
      name: "CALL heartbeat",
      verb: "CALL",
      uri: `/api/v2/Repo/Mirror:${E2E_MIRROR}:(heartbeat)`,
      body: {},
    },
    // packrat raises a timeout under 10 to 10; on SQLite it sleeps it and answers [].
    {
      name: "CALL poll",
      verb: "CALL",
      uri: "/api/v2/Repo/Repo:e2e-apt:(poll)",
      body: { timeout: 1 },
    },
    {
      name: "CALL poll without timeout",
      verb: "CALL",
      uri: "/api/v2/Repo/Repo:e2e-apt:(poll)",
      body: {},
    },
    {
      name: "GET an object that is not there",
      verb: "GET",
      uri: "/api/v2/Package/PackageFile:999999:",
    },
    { name: "GET a path that is not there", verb: "GET", uri: "/api/v2/Repo/Nothing:1:" },
    {
      name: "LIST with an unknown filter",
      verb: "LIST",
      uri: "/api/v2/Package/PackageFile",
      headers: { Filter: "nope" },
      body: {},
    },
    {
      name: "LIST the repo filter with an unknown repo",
      verb: "LIST",
      uri: "/api/v2/Package/PackageFile",
      headers: { Filter: "repo" },
      body: repoFilter("no-such-repo", null),
    },
    {
      name: "GET anonymously",
      verb: "GET",
      uri: `/api/v2/Repo/Mirror:${E2E_MIRROR}:`,
      as: "anonymous",
    },
    {
      name: "LIST anonymously",
      verb: "LIST",
      uri: "/api/v2/Attrib/DistroVersion",
      as: "anonymous",
    },
    {
      name: "CALL heartbeat anonymously",
      verb: "CALL",
      uri: `/api/v2/Repo/Mirror:${E2E_MIRROR}:(heartbeat)`,
      body: {},
      as: "anonymous",
    },
    {
      name: "GET with a dead session",
      verb: "GET",
      uri: `/api/v2/Repo/Mirror:${E2E_MIRROR}:`,
      as: "dead-session",
    },
    {
      name: "CALL login with a wrong password",
      verb: "CALL",
      uri: "/api/v2/Auth/User(login)",
      body: { username: E2E_MIRROR, password: "wrong" },
      as: "anonymous",
    },
    {
      name: "CALL login",
      verb: "CALL",
      uri: "/api/v2/Auth/User(login)",
      body: { username: E2E_MIRROR, password: E2E_PSK },
      as: "anonymous",
    },
    {
      name: "GET without the CInP-Version header",
      verb: "GET",
      uri: `/api/v2/Repo/Mirror:${E2E_MIRROR}:`,
      headers: { "CInP-Version": "" },
    },
    { name: "GET a file's bytes", verb: "GET", uri: "/files/hello_1.0-1_all.deb", as: "anonymous" },
  ];
}

/** Ask every question of the master at `url`; a session of the mirror's user is made first. */
export async function askQuestions(
  url: string,
  questions: readonly Question[],
): Promise<Map<string, RecordedAnswer>> {
  const login = await call(url, "CALL", "/api/v2/Auth/User(login)", {
    username: E2E_MIRROR,
    password: E2E_PSK,
  });
  if (login.status !== 200)
    throw new Error(`login as ${E2E_MIRROR}: ${login.status} ${login.text}`);
  const token = JSON.parse(login.text) as string;
  const out = new Map<string, RecordedAnswer>();
  for (const q of questions) {
    const auth: Record<string, string> =
      (q.as ?? "session") === "session"
        ? { "Auth-Id": E2E_MIRROR, "Auth-Token": token }
        : q.as === "dead-session"
          ? { "Auth-Id": E2E_MIRROR, "Auth-Token": "0".repeat(32) }
          : {};
    out.set(q.name, await call(url, q.verb, q.uri, q.body, { ...auth, ...q.headers }));
  }
  return out;
}

async function call(
  url: string,
  verb: string,
  uri: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<RecordedAnswer> {
  const h: Record<string, string> = {
    "CInP-Version": "0.9",
    "Content-Type": "application/json;charset=utf-8",
    ...headers,
  };
  for (const [k, v] of Object.entries(h)) if (v === "") delete h[k];
  const res = await request(`${url}${uri}`, {
    method: verb,
    headers: h,
    body: body === undefined ? "" : JSON.stringify(body),
  });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  const binary = uri.startsWith("/files/");
  return {
    status: res.statusCode,
    headers: res.headers,
    // File bytes are not JSON: record their length only.
    text: binary ? JSON.stringify({ bytes: bytes.length }) : bytes.toString("utf8"),
  };
}

/**
 * What the agent's own client makes of a master holding the e2e catalog: every call it uses,
 * in the order a sync makes them. Recorded through a proxy in front of the real master, and
 * replayed for the unit tests.
 */
export async function clientJourney(client: MasterClient): Promise<Record<string, unknown>> {
  await client.checkVersion();
  const mirror = await client.getMirror();
  const repos = await client.getRepos(mirror.repoUris);
  const distroVersions = await client.getDistroVersions();
  const files: Record<string, unknown> = {};
  for (const repo of repos) files[repo.name] = await client.listPackageFiles(repo.uri);
  await client.heartbeat();
  const hello = (files["e2e-apt"] as PackageFileListing).files.find(
    (f) => f.packageName === "hello",
  );
  let downloaded = 0;
  if (hello)
    for await (const chunk of (await client.download(hello.fileUrl)).body)
      downloaded += (chunk as Buffer).length;
  return { mirror: { ...mirror, lastHeartbeat: null }, repos, distroVersions, files, downloaded };
}
