/**
 * pacman's view of a repo: for each `<dir>/<repo>.db` (+ `.db.sig` when signed; pacman never
 * asks for `.db.tar.gz`), the database's entries are `name-ver/desc` (pacman ignores `./`
 * entries without a word), each desc names a %FILENAME% next to the db with its %CSIZE% and
 * %SHA256SUM% (pacman 6.0 skips that check when %PGPSIG% is set, so we do it), and an embedded
 * %PGPSIG% matches the `.sig` beside the package. `.files` is signed too, and the `.tar.gz`
 * names (and their `.sig`s) must hold the same bytes as the names pacman fetches.
 *
 * Cost: a database is read member by member, and a gzip member already read with the same
 * bytes is not read again (see readDatabase), so checking a +1 on 10,000 packages parses about
 * 64 entries; the package references of every entry are checked on every reading.
 */
import { readTar } from "../formats/tar.js";
import type { TarEntry } from "../formats/tar.js";
import {
  Findings,
  MAX_INDEX_BYTES,
  checkPackageRef,
  decodeUtf8,
  decompressAny,
  errorText,
  joinRel,
  readRequired,
} from "./common.js";
import {
  byteView,
  rememberMember,
  splitGzipMembers,
  type GzipMember,
  type GzipMemberMemo,
  type KnownGzipMember,
} from "./gzip-members.js";
import type { CheckInput, CheckProblem, CheckResult, SignatureVerifier } from "./types.js";

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

/** Byte equality without copying either side (Buffer.from(Uint8Array) copies). */
const sameBytes = (a: Uint8Array, b: Uint8Array) => a === b || byteView(a).equals(b);

/**
 * Signatures that verified, by verifier, data object and signature object. Metadata bytes are
 * never changed once made (see src/digest.ts), so a quick generation that republishes the last
 * files database and its signature, as the same objects, need not hash its 3 MB again; bytes
 * read from disk are new objects and always verified.
 */
const verified = new WeakMap<SignatureVerifier, WeakMap<Uint8Array, WeakSet<Uint8Array>>>();

async function verifiesDetached(
  verifier: SignatureVerifier,
  data: Uint8Array,
  sig: Uint8Array,
): Promise<boolean> {
  let byData = verified.get(verifier);
  if (!byData) verified.set(verifier, (byData = new WeakMap()));
  if (byData.get(data)?.has(sig) === true) return true;
  if (!(await verifier.verifyDetached(data, sig))) return false;
  let sigs = byData.get(data);
  if (!sigs) byData.set(data, (sigs = new WeakSet()));
  sigs.add(sig);
  return true;
}

/**
 * A file the generation lists must be there (a publisher that lost it is a problem even if
 * pacman itself never asks for it); one it does not list is read if present.
 */
async function readIfListed(
  f: Findings,
  input: CheckInput,
  rel: string,
): Promise<Uint8Array | null> {
  if (input.metadataPaths.includes(rel))
    return readRequired(f, input.reader, rel, "the generation lists it");
  return input.reader.read(rel);
}

async function checkDb(
  memos: Memos,
  dir: string,
  name: string,
  input: CheckInput,
  f: Findings,
): Promise<void> {
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
      if (sig !== null && !(await verifiesDetached(verifier, main, sig)))
        f.add(
          `${prefix}${name}${suffix}.sig`,
          `signature does not verify against ${name}${suffix}`,
        );
      // repo-add's long names, for tools other than pacman: the same bytes, the same signature.
      const longSig = await readIfListed(f, input, `${prefix}${name}${suffix}.tar.gz.sig`);
      if (sig !== null && longSig !== null && !sameBytes(longSig, sig))
        f.add(`${prefix}${name}${suffix}.tar.gz.sig`, `differs from ${name}${suffix}.sig`);
    }
    const long = await readIfListed(f, input, `${prefix}${name}${suffix}.tar.gz`);
    if (long !== null && !sameBytes(long, main))
      f.add(`${prefix}${name}${suffix}.tar.gz`, `differs from ${name}${suffix}`);
  }

  let readings: EntryReading[];
  try {
    readings = await readDatabase(memos, input.scope ?? "", dbPath, db);
  } catch (err) {
    f.add(dbPath, `cannot be read as a database: ${errorText(err)}`);
    return;
  }
  for (const r of readings) {
    for (const problem of r.problems) f.add(problem.path, problem.problem);
    if (r.ref === null) continue;
    const { entryDir, filename, csize, sha256, pgpsig } = r.ref;
    const where = `${dbPath} (${entryDir})`;
    const rel = filename.includes("/") ? null : joinRel(dir, filename);
    await checkPackageRef(f, reader, rel, { size: csize, sha256 }, where, filename);
    if (pgpsig !== null && rel !== null) {
      const sig = await reader.read(`${rel}.sig`);
      if (sig === null) f.add(`${rel}.sig`, `missing (${where} embeds a %PGPSIG%)`);
      else if (byteView(sig).toString("base64") !== pgpsig)
        f.add(`${rel}.sig`, `differs from the %PGPSIG% in ${where}`);
    }
  }
}

/**
 * What one `name-ver/desc` entry says, and what is wrong with it on its own: a pure function
 * of the entry's bytes. The package it names is checked against the tree on every reading.
 */
interface EntryReading {
  problems: readonly CheckProblem[];
  ref: {
    entryDir: string;
    filename: string;
    csize: number | null;
    sha256: string | null;
    /** %PGPSIG% as canonical base64 (a string: the memo of a large db holds 10,000s). */
    pgpsig: string | null;
  } | null;
}

const NO_PROBLEMS: readonly CheckProblem[] = Object.freeze([]);

const copyString = (s: string) => Buffer.from(s).toString();

function readEntry(dbPath: string, e: TarEntry): EntryReading | null {
  if (e.type !== "file") return null;
  if (!e.name.endsWith("/desc")) return null;
  const problems: CheckProblem[] = [];
  const entryDir = e.name.slice(0, -"/desc".length);
  const where = `${dbPath} (${entryDir})`;
  if (entryDir.startsWith("./") || entryDir.includes("/")) {
    problems.push({
      path: dbPath,
      problem: `entry ${e.name} is not name-ver/desc; pacman ignores it`,
    });
    return { problems, ref: null };
  }
  const desc = parseDesc(decodeUtf8(e.data) ?? "");
  const one = (k: string) => desc.get(k)?.[0];
  const pkgName = one("NAME");
  const version = one("VERSION");
  if (!pkgName || !version) {
    problems.push({ path: where, problem: "desc lacks %NAME% or %VERSION%" });
    return { problems, ref: null };
  }
  if (entryDir !== `${pkgName}-${version}`)
    problems.push({
      path: where,
      problem: `entry is named ${entryDir}, desc says ${pkgName}-${version}`,
    });
  const filename = one("FILENAME");
  if (!filename) {
    problems.push({ path: where, problem: "desc has no %FILENAME%" });
    return { problems, ref: null };
  }
  const csize = Number(one("CSIZE"));
  const sha256 = one("SHA256SUM");
  if (!sha256) problems.push({ path: where, problem: "desc has no %SHA256SUM%" });
  const pgpsig = one("PGPSIG");
  return {
    problems: problems.length === 0 ? NO_PROBLEMS : problems,
    ref: {
      entryDir,
      // Copies: a substring would keep the whole desc text alive in the member memo.
      filename: copyString(filename),
      csize: Number.isSafeInteger(csize) ? csize : null,
      sha256: sha256 === undefined ? null : copyString(sha256),
      pgpsig: pgpsig ? Buffer.from(pgpsig, "base64").toString("base64") : null,
    },
  };
}

function readEntries(dbPath: string, tar: Uint8Array): EntryReading[] {
  const out: EntryReading[] = [];
  for (const e of readTar(tar, { maxEntries: 1_000_000 })) {
    const r = readEntry(dbPath, e);
    if (r !== null) out.push(r);
  }
  return out;
}

/**
 * A database as pacman reads it: decompressed whole and read as one tar. A gzip database that
 * is a series of members (RFC 1952 §2.2; libarchive reads them as one stream), each holding
 * whole tar entries, is read member by member instead, and a member holding the same bytes
 * as one read last time is not decompressed or parsed again: with one package added to
 * 10,000, one member of about 64 entries is new. The readings are a pure function of the
 * member's bytes, which are compared in full; anything else (a member that splits an entry,
 * a pax or long-name header, a zero block, xz or zstd) takes the whole-file path.
 */
async function readDatabase(
  memos: Memos,
  scope: string,
  dbPath: string,
  db: Uint8Array,
): Promise<EntryReading[]> {
  const memoKey = `${scope}\0${dbPath}`;
  const memo = memos.get(memoKey);
  let members: GzipMember<KnownMember>[] | null = null;
  try {
    if (db[0] === 0x1f && db[1] === 0x8b) members = splitGzipMembers(db, memo, MAX_INDEX_BYTES);
  } catch {
    // Whatever is wrong, the whole-file reading below says it the way gunzip does.
    members = null;
  }
  if (members === null) {
    memos.delete(memoKey);
    return readEntries(dbPath, await decompressAny(db));
  }
  const used: MemberMemo = new Map();
  const out: EntryReading[] = [];
  for (const [i, m] of members.entries()) {
    let known = m.known;
    if (known === null) {
      const tar = m.plain!;
      // The end-of-archive blocks: pacman reads nothing after them, and only they are zeros.
      if (isZeros(tar)) {
        if (tar.length >= 1024) known = { bytes: m.bytes, readings: [], end: true };
      } else if (wholeEntries(tar))
        known = { bytes: m.bytes, readings: readEntries(dbPath, tar), end: false };
    }
    if (known === null || (known.end && i !== members.length - 1)) {
      memos.delete(memoKey);
      return readEntries(dbPath, await decompressAny(db));
    }
    rememberMember(used, known);
    for (const r of known.readings) out.push(r);
  }
  memos.set(memoKey, used);
  return out;
}

/** Members read last time, by memberKey, per database path. */
interface KnownMember extends KnownGzipMember {
  readings: EntryReading[];
  /** The member is the end-of-archive blocks (it must be the last). */
  end: boolean;
}
type MemberMemo = GzipMemberMemo<KnownMember>;
/** What a pacman checker remembers of the databases it read, by repo and path. */
type Memos = Map<string, MemberMemo>;

function isZeros(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/**
 * Does `tar` hold whole entries only, each a plain file or directory header (ustar or GNU,
 * valid checksum) and its padded data, and nothing else? Then reading it alone gives the
 * entries reading the whole archive gives at this place.
 */
function wholeEntries(tar: Uint8Array): boolean {
  if (tar.length % 512 !== 0) return false;
  let pos = 0;
  while (pos < tar.length) {
    const header = tar.subarray(pos, pos + 512);
    const type = header[156];
    // "0", NUL (files), "5" (directories): anything else may carry state to the next entry.
    if (type !== 0x30 && type !== 0 && type !== 0x35) return false;
    if (isZeros(header)) return false;
    const size = octal(header, 124, 12);
    if (size === null) return false;
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return pos === tar.length;
}

function octal(header: Uint8Array, offset: number, length: number): number | null {
  let value = 0;
  let digits = 0;
  for (let i = offset; i < offset + length; i++) {
    const b = header[i]!;
    if (b === 0 || b === 0x20) {
      if (digits > 0) break;
      continue;
    }
    if (b < 0x30 || b > 0x37) return null;
    value = value * 8 + (b - 0x30);
    digits++;
  }
  return value;
}

/**
 * A pacman checker with a memory of its own (the gzip members it has read, per repo and
 * database), so two layouts or two engines never share or evict each other's.
 */
export function createPacmanCheck(): (input: CheckInput) => Promise<CheckResult> {
  const memos: Memos = new Map();
  return (input) => checkPacmanRepoWith(memos, input);
}

/** A shared checker, for tests and one-off checks. */
export const checkPacmanRepo = createPacmanCheck();

async function checkPacmanRepoWith(memos: Memos, input: CheckInput): Promise<CheckResult> {
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
      await checkDb(memos, dir, name, input, f);
    } catch (err) {
      f.add(p, `cannot be read as pacman does: ${errorText(err)}`);
    }
  }
  return f.result();
}
