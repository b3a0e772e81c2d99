/**
 * apt's view of a repo: for each `dists/<suite>/`, InRelease (cleartext-signed) and Release +
 * Release.gpg; every index the Release lists under SHA256 exists with that size and hash,
 * under its plain name and, with `Acquire-By-Hash: yes`, under `by-hash/SHA256/<hash>`; every
 * component/architecture has a Packages index; every compressed Packages decodes to the same
 * stanzas; every stanza's Filename exists with its Size and SHA256.
 */
import {
  Findings,
  MAX_INDEX_BYTES,
  checkPackageRef,
  comparePackageRef,
  decodeUtf8,
  decompressAny,
  dirOf,
  errorText,
  joinRel,
  readRequired,
  sha256Hex,
} from "./common.js";
import {
  decompressRemembering,
  sameBytesAs,
  type GzipMemberMemo,
  type KnownPlainMember,
} from "./gzip-members.js";
import { isUtf8 } from "node:buffer";
import type { CheckInput, CheckProblem, CheckResult } from "./types.js";

type Stanza = Map<string, string>;

/** Only spaces, tabs or CR between start and end? (apt takes such a line as a stanza break.) */
function blank(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}

/**
 * deb822 stanzas: `Field: value`, continuation lines start with a space or tab. Written as one
 * scan with indexOf (no per-line split, trim or concatenation): a 10,000-package index is read
 * on every publish, by the self-check.
 */
export function parseDeb822(text: string): Stanza[] {
  const stanzas: Stanza[] = [];
  let current: Stanza | null = null;
  // The field whose continuation lines are being collected: its name, first-line value, and
  // where its continuation lines start (-1: none yet) and end.
  let field: string | null = null;
  let value = "";
  let contStart = -1;
  let contEnd = -1;
  const closeField = () => {
    if (current && field !== null && contStart >= 0)
      current.set(field, `${value}\n${text.slice(contStart, contEnd)}`);
    field = null;
    contStart = -1;
  };
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos);
    if (end === -1) end = text.length;
    const first = text.charCodeAt(pos);
    if (blank(text, pos, end)) {
      closeField();
      if (current) stanzas.push(current);
      current = null;
    } else if (first === 32 || first === 9) {
      if (field !== null) {
        if (contStart < 0) contStart = pos;
        contEnd = end;
      }
    } else {
      closeField();
      const colon = text.indexOf(":", pos);
      if (colon > pos && colon < end) {
        current ??= new Map();
        field = text.slice(pos, colon).toLowerCase();
        value = text.slice(colon + 1, end).trim();
        current.set(field, value);
      }
    }
    pos = end + 1;
  }
  closeField();
  if (current) stanzas.push(current);
  return stanzas;
}

interface ReleaseEntry {
  sha256: string;
  size: number;
  name: string;
}

function releaseEntries(release: Stanza): ReleaseEntry[] {
  const out: ReleaseEntry[] = [];
  for (const line of (release.get("sha256") ?? "").split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3) continue;
    const [sha256, size, name] = parts as [string, string, string];
    out.push({ sha256: sha256.toLowerCase(), size: Number(size), name });
  }
  return out;
}

const normalize = (s: string) =>
  s
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n")
    .trimEnd();

async function checkDist(
  memos: Memos,
  dist: string,
  input: CheckInput,
  f: Findings,
): Promise<void> {
  const { reader, verifier } = input;
  f.entryPoints++;
  const releasePath = `${dist}/Release`;
  const releaseBytes = await readRequired(f, reader, releasePath, "apt reads it");
  if (releaseBytes === null) return;
  const releaseText = decodeUtf8(releaseBytes);
  if (releaseText === null) {
    f.add(releasePath, "is not valid UTF-8");
    return;
  }
  if (verifier) {
    const inRelease = await readRequired(f, reader, `${dist}/InRelease`, "the repo is signed");
    if (inRelease !== null) {
      const res = await verifier.verifyCleartext(decodeUtf8(inRelease) ?? "");
      if (!res.ok)
        f.add(`${dist}/InRelease`, `signature does not verify: ${res.error ?? "bad signature"}`);
      else if (normalize(res.body ?? "") !== normalize(releaseText))
        f.add(`${dist}/InRelease`, "signs a different text than Release holds");
    }
    const gpg = await readRequired(f, reader, `${dist}/Release.gpg`, "the repo is signed");
    if (gpg !== null && !(await verifier.verifyDetached(releaseBytes, gpg)))
      f.add(`${dist}/Release.gpg`, "signature does not verify against Release");
  }
  const release = parseDeb822(releaseText)[0];
  if (!release) {
    f.add(releasePath, "holds no fields");
    return;
  }
  if (!release.has("suite") && !release.has("codename"))
    f.add(releasePath, "has neither Suite nor Codename");
  const entries = releaseEntries(release);
  if (entries.length === 0) {
    f.add(releasePath, "lists no index under SHA256");
    return;
  }
  const byHash = (release.get("acquire-by-hash") ?? "").toLowerCase() === "yes";
  const listed = new Map(entries.map((e) => [e.name, e]));
  const contents = new Map<string, Uint8Array>();
  for (const e of entries) {
    const rel = joinRel(dist, e.name);
    if (rel === null) {
      f.add(releasePath, `lists ${JSON.stringify(e.name)}, outside the dist`);
      continue;
    }
    const paths = [rel];
    if (byHash) paths.push(`${dirOf(rel)}/by-hash/SHA256/${e.sha256}`);
    for (const p of paths) {
      const data = await reader.read(p);
      if (data === null) {
        f.add(p, `missing (listed in ${releasePath})`);
        continue;
      }
      if (data.length !== e.size)
        f.add(p, `is ${data.length} bytes, ${releasePath} says ${e.size}`);
      const actual = sha256Hex(data);
      if (actual !== e.sha256) f.add(p, `SHA-256 is ${actual}, ${releasePath} says ${e.sha256}`);
      else contents.set(e.name, data);
    }
  }

  const components = (release.get("components") ?? "").split(/\s+/).filter(Boolean);
  const arches = (release.get("architectures") ?? "")
    .split(/\s+/)
    .filter((a) => a !== "" && a !== "all" && a !== "source");
  for (const c of components) {
    for (const a of arches) {
      const base = `${c}/binary-${a}/Packages`;
      if (![base, `${base}.xz`, `${base}.gz`].some((n) => listed.has(n)))
        f.add(releasePath, `lists no ${base} index for component ${c}, architecture ${a}`);
    }
  }

  // Each Packages index, in every compression listed: the same stanzas, each naming a real file.
  const groups = new Map<string, string[]>();
  for (const name of listed.keys()) {
    const m = /^(.*\/Packages)(\.gz|\.xz|\.zst)?$/.exec(name);
    if (!m) continue;
    groups.set(m[1]!, [...(groups.get(m[1]!) ?? []), name]);
  }
  for (const [base, names] of groups) {
    const where = `${dist}/${base}`;
    const memoKey = `${input.scope ?? ""}\0${where}`;
    const memo = memos.get(memoKey);
    const used: IndexMemo = { stanzas: new Map(), members: new Map(), byMember: new Map() };
    // The first variant that decodes is the reference; the others must hold the same bytes
    // once decompressed (compared as bytes: decoding 7 MB of text per variant is the slow part).
    let referenceBytes: Uint8Array | null = null;
    let referenceName = "";
    // The reference cut at the members of a gzip variant holding exactly its bytes, where each
    // cut falls between stanzas: read member by member, a remembered member's stanzas are not
    // even looked up again.
    let segments: Segment[] | null = null;
    for (const name of names.sort()) {
      const data = contents.get(name);
      if (data === undefined) continue; // already reported
      let parts: Uint8Array[];
      let members: KnownPlainMember[] | null;
      try {
        const decoded = await decompressRemembering(
          data,
          memo?.members.get(name),
          MAX_INDEX_BYTES,
          decompressAny,
        );
        parts = decoded.parts;
        members = decoded.members;
        if (decoded.used) used.members.set(name, decoded.used);
      } catch (err) {
        f.add(`${dist}/${name}`, `cannot be decompressed: ${errorText(err)}`);
        continue;
      }
      if (referenceBytes !== null) {
        if (!sameBytesAs(referenceBytes, parts))
          f.add(`${dist}/${name}`, `decodes to other stanzas than ${dist}/${referenceName}`);
        else segments ??= stanzaAligned(parts, members);
        continue;
      }
      const plain = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (!isUtf8(plain)) {
        f.add(`${dist}/${name}`, "is not valid UTF-8");
        continue;
      }
      referenceBytes = plain;
      referenceName = name;
      segments = stanzaAligned(parts, members);
    }
    if (referenceBytes === null) continue;
    const readings = segments
      ? readSegments(segments, where, memo, used)
      : readStanzas(decodeUtf8(referenceBytes) ?? "", where, memo?.stanzas, used.stanzas);
    const direct = input.reader.packageInfoSync?.bind(input.reader);
    for (const r of readings) {
      for (const p of r.problems) f.add(p.path, p.problem);
      if (r.ref === null) continue;
      const { rel, size, sha256, what, filename } = r.ref;
      // A reader that answers at once (the publisher's) costs no promise per stanza.
      if (direct && rel !== null)
        comparePackageRef(f, rel, direct(rel), { size, sha256 }, what, filename);
      else await checkPackageRef(f, reader, rel, { size, sha256 }, what, filename);
    }
    memos.set(memoKey, used);
  }
}

/**
 * What a checker remembers of one Packages index between runs (issue 25): the reading of each
 * stanza chunk of the last reference text, keyed by the chunk's exact text, and each gzip
 * variant's members with what they decompress to. The next generation of a 10,000-package
 * index parses and inflates only what changed; everything else is matched in full (string
 * and byte equality), so a reading is the one the bytes give, never a guess.
 */
interface IndexMemo {
  stanzas: Map<string, StanzaReading[]>;
  members: Map<string, GzipMemberMemo<KnownPlainMember>>;
  /**
   * The readings of each gzip member's stanzas. A member is remembered only with its exact
   * compressed bytes, so it stands for exactly the plain bytes it was read from.
   */
  byMember: Map<KnownPlainMember, StanzaReading[]>;
}

/** A piece of a Packages index that starts and ends between stanzas, and the member it is. */
interface Segment {
  plain: Uint8Array;
  member: KnownPlainMember;
}

/**
 * The parts as segments, when every cut falls right after an empty line: there the deb822
 * reader holds no stanza and no field, so reading the parts one by one gives exactly the
 * stanzas of reading them joined. Null otherwise (then the text is read whole).
 */
function stanzaAligned(
  parts: readonly Uint8Array[],
  members: readonly KnownPlainMember[] | null,
): Segment[] | null {
  if (members === null || members.length !== parts.length) return null;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i]!;
    if (p.length < 2 || p[p.length - 1] !== 0x0a || p[p.length - 2] !== 0x0a) return null;
  }
  return parts.map((plain, i) => ({ plain, member: members[i]! }));
}

/** The stanzas of the segments in order; a member read before is taken from the memory. */
function readSegments(
  segments: readonly Segment[],
  where: string,
  memo: IndexMemo | undefined,
  used: IndexMemo,
): StanzaReading[] {
  const out: StanzaReading[] = [];
  for (const [i, s] of segments.entries()) {
    let readings = memo?.byMember.get(s.member) ?? used.byMember.get(s.member);
    if (readings === undefined) {
      // The whole is valid UTF-8 (checked), and a cut after a newline splits no character.
      // Only the first piece may lose a byte order mark, as the whole text would.
      const text = i === 0 ? decodeUtf8(s.plain) : keepBom.decode(s.plain);
      readings = readStanzas(text ?? "", where, memo?.stanzas, used.stanzas);
    }
    used.byMember.set(s.member, readings);
    for (const r of readings) out.push(r);
  }
  return out;
}

const keepBom = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** By scope (the repo), dist and index. */
type Memos = Map<string, IndexMemo>;

/** What one stanza says, and what is wrong with it on its own (a pure function of its text). */
interface StanzaReading {
  problems: readonly CheckProblem[];
  /** The package file it names, checked against the tree on every reading. */
  ref: {
    what: string;
    rel: string | null;
    filename: string;
    size: number | null;
    sha256: string | null;
  } | null;
}

function readStanza(stanza: Stanza, where: string): StanzaReading {
  const problems: CheckProblem[] = [];
  const pkg = stanza.get("package");
  const filename = stanza.get("filename");
  const what = `${where} (${pkg ?? "a stanza without Package"})`;
  if (!pkg || !stanza.get("version") || !stanza.get("architecture"))
    problems.push({
      path: where,
      problem: `a stanza lacks Package, Version or Architecture (${pkg ?? "?"})`,
    });
  if (!filename) {
    problems.push({ path: where, problem: `${pkg ?? "a stanza"} has no Filename` });
    return { problems, ref: null };
  }
  const size = Number(stanza.get("size"));
  const sha256 = stanza.get("sha256");
  if (!Number.isSafeInteger(size) || !sha256 || !/^[0-9a-f]{64}$/i.test(sha256))
    problems.push({ path: where, problem: `${pkg ?? filename} lacks a valid Size or SHA256` });
  return {
    problems,
    ref: {
      what,
      rel: joinRel("", filename),
      filename,
      size: Number.isSafeInteger(size) ? size : null,
      sha256: sha256 ?? null,
    },
  };
}

/**
 * The stanzas of `text`, read chunk by chunk between empty lines ("\n\n": no field continues
 * across one, so each chunk reads alone as it reads in the whole). A chunk read last time is
 * not parsed again. `used` gets every chunk of this text, keyed by substrings of it: the memo
 * keeps one index's text alive, not every generation's.
 */
function readStanzas(
  text: string,
  where: string,
  memo: Map<string, StanzaReading[]> | undefined,
  used: Map<string, StanzaReading[]>,
): StanzaReading[] {
  const out: StanzaReading[] = [];
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n\n", pos);
    if (end === -1) end = text.length;
    const chunk = text.slice(pos, end);
    let readings = memo?.get(chunk) ?? used.get(chunk);
    if (readings === undefined) {
      // A copy through JSON: substrings of this text in a reading kept for later generations
      // would keep this whole text alive with it.
      readings = JSON.parse(
        JSON.stringify(parseDeb822(chunk).map((st) => readStanza(st, where))),
      ) as StanzaReading[];
    }
    used.set(chunk, readings);
    for (const r of readings) out.push(r);
    pos = end + 2;
  }
  return out;
}

/**
 * An apt checker with a memory of its own (what it read of each Packages index, per repo and
 * dist), so two layouts or two engines never share or evict each other's.
 */
export function createAptCheck(): (input: CheckInput) => Promise<CheckResult> {
  const memos: Memos = new Map();
  return (input) => checkAptRepoWith(memos, input);
}

/** A shared checker, for tests and one-off checks. */
export const checkAptRepo = createAptCheck();

async function checkAptRepoWith(memos: Memos, input: CheckInput): Promise<CheckResult> {
  const f = new Findings();
  const dists = new Set<string>();
  for (const p of input.metadataPaths) {
    const m = /^(dists\/[^/]+)\/(InRelease|Release)$/.exec(p);
    if (m) dists.add(m[1]!);
  }
  if (dists.size === 0 && input.metadataPaths.length > 0)
    f.add("dists", "no dists/<suite>/Release: apt has nothing to read");
  for (const dist of [...dists].sort()) {
    try {
      await checkDist(memos, dist, input, f);
    } catch (err) {
      f.add(dist, `cannot be read as apt does: ${errorText(err)}`);
    }
  }
  return f.result();
}
