/**
 * pacman's view of a repo: for each `<dir>/<repo>.db` (+ `.db.sig` when signed; pacman never
 * asks for `.db.tar.gz`), the database's entries are `name-ver/desc` (pacman ignores `./`
 * entries without a word), each desc names a %FILENAME% next to the db with its %CSIZE% and
 * %SHA256SUM% (pacman 6.0 skips that check when %PGPSIG% is set, so we do it), and an embedded
 * %PGPSIG% matches the `.sig` beside the package. `.files` and the `.tar.gz` names must hold
 * the same bytes as the names pacman fetches.
 */
import { readTar } from "../formats/tar.js";
import {
  Findings,
  checkPackageRef,
  decodeUtf8,
  decompressAny,
  errorText,
  joinRel,
  readRequired,
} from "./common.js";
import type { CheckInput, CheckResult } from "./types.js";

/** A desc file: `%KEY%` then one value per line, a blank line between fields. */
export function parseDesc(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let key: string | null = null;
  for (const line of text.split("\n")) {
    const m = /^%([A-Z0-9]+)%$/.exec(line);
    if (m) {
      key = m[1]!;
      out.set(key, []);
    } else if (line === "") key = null;
    else if (key !== null) out.get(key)!.push(line);
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

async function checkDb(dir: string, name: string, input: CheckInput, f: Findings): Promise<void> {
  const { reader, verifier } = input;
  f.entryPoints++;
  const prefix = dir === "" ? "" : `${dir}/`;
  const dbPath = `${prefix}${name}.db`;
  const db = await readRequired(f, reader, dbPath, "pacman fetches it");
  if (db === null) return;
  for (const suffix of [".db", ".files"]) {
    const main = suffix === ".db" ? db : await reader.read(`${prefix}${name}${suffix}`);
    if (main === null) continue;
    if (verifier) {
      const sig = await readRequired(
        f,
        reader,
        `${prefix}${name}${suffix}.sig`,
        "the repo is signed",
      );
      if (sig !== null && !(await verifier.verifyDetached(main, sig)))
        f.add(
          `${prefix}${name}${suffix}.sig`,
          `signature does not verify against ${name}${suffix}`,
        );
    }
    const long = await reader.read(`${prefix}${name}${suffix}.tar.gz`);
    if (long !== null && !sameBytes(long, main))
      f.add(`${prefix}${name}${suffix}.tar.gz`, `differs from ${name}${suffix}`);
  }

  let entries;
  try {
    entries = readTar(decompressAny(db), { maxEntries: 1_000_000 });
  } catch (err) {
    f.add(dbPath, `cannot be read as a database: ${errorText(err)}`);
    return;
  }
  for (const e of entries) {
    if (e.type !== "file") continue;
    if (!e.name.endsWith("/desc")) continue;
    const entryDir = e.name.slice(0, -"/desc".length);
    const where = `${dbPath} (${entryDir})`;
    if (entryDir.startsWith("./") || entryDir.includes("/")) {
      f.add(dbPath, `entry ${e.name} is not name-ver/desc; pacman ignores it`);
      continue;
    }
    const desc = parseDesc(decodeUtf8(e.data) ?? "");
    const one = (k: string) => desc.get(k)?.[0];
    const pkgName = one("NAME");
    const version = one("VERSION");
    if (!pkgName || !version) {
      f.add(where, "desc lacks %NAME% or %VERSION%");
      continue;
    }
    if (entryDir !== `${pkgName}-${version}`)
      f.add(where, `entry is named ${entryDir}, desc says ${pkgName}-${version}`);
    const filename = one("FILENAME");
    if (!filename) {
      f.add(where, "desc has no %FILENAME%");
      continue;
    }
    const csize = Number(one("CSIZE"));
    const sha256 = one("SHA256SUM");
    if (!sha256) f.add(where, "desc has no %SHA256SUM%");
    const rel = filename.includes("/") ? null : joinRel(dir, filename);
    await checkPackageRef(
      f,
      reader,
      rel,
      { size: Number.isSafeInteger(csize) ? csize : null, sha256: sha256 ?? null },
      where,
      filename,
    );
    const pgpsig = one("PGPSIG");
    if (pgpsig && rel !== null) {
      const sig = await reader.read(`${rel}.sig`);
      if (sig === null) f.add(`${rel}.sig`, `missing (${where} embeds a %PGPSIG%)`);
      else if (!sameBytes(sig, Buffer.from(pgpsig, "base64")))
        f.add(`${rel}.sig`, `differs from the %PGPSIG% in ${where}`);
    }
  }
}

export async function checkPacmanRepo(input: CheckInput): Promise<CheckResult> {
  const f = new Findings();
  const dbs = new Map<string, [string, string]>();
  for (const p of input.metadataPaths) {
    const m = /^(?:(.*)\/)?([^/]+)\.db$/.exec(p);
    if (m) dbs.set(p, [m[1] ?? "", m[2]!]);
  }
  if (dbs.size === 0 && input.metadataPaths.length > 0)
    f.add("", "no <repo>.db: pacman has nothing to read");
  for (const [p, [dir, name]] of [...dbs].sort(([a], [b]) => (a < b ? -1 : 1))) {
    try {
      await checkDb(dir, name, input, f);
    } catch (err) {
      f.add(p, `cannot be read as pacman does: ${errorText(err)}`);
    }
  }
  return f.result();
}
