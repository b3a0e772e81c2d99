/**
 * dnf's view of a repo: for each `<root>/repodata/repomd.xml` (+ `repomd.xml.asc` when signed),
 * every `<data>` location exists with its size and checksum, and decompresses to its
 * open-size and open-checksum; primary lists as many packages as it says, and each package
 * location exists with its size and checksum; filelists and other describe the same pkgids.
 * repomd.xml is parsed with fast-xml-parser; the large documents are scanned.
 */
import { createHash } from "node:crypto";
import { XMLParser } from "fast-xml-parser";
import {
  Findings,
  MAX_INDEX_BYTES,
  checkPackageRef,
  comparePackageRef,
  decompressAny,
  errorText,
  hashHex,
  joinRel,
  readRequired,
} from "./common.js";
import {
  decompressRemembering,
  type GzipMemberMemo,
  type KnownPlainMember,
} from "./gzip-members.js";
import {
  scanRepodata,
  scanRepodataPieces,
  type PieceMemo,
  type ScanMemo,
  type ScannedPackage,
} from "./repodata-scan.js";
import type { CheckInput, CheckResult } from "./types.js";

/**
 * What a yum checker remembers of one repodata document between runs (issue 25): its gzip
 * members with what they inflate to, and each <package> element's reading by its exact text.
 * A generation that adds one package to 10,000 inflates one member and reads one element per
 * document; everything else is matched in full (bytes, text), so the reading is what the
 * bytes say.
 */
interface DocMemo {
  members: GzipMemberMemo<KnownPlainMember> | undefined;
  packages: ReadonlyMap<string, ScannedPackage> | undefined;
  /** The packages of each gzip member read as a middle piece (scanRepodataPieces). */
  byMember: ReadonlyMap<KnownPlainMember, ScannedPackage[]> | undefined;
}

/** By scope (the repo), dnf repo root and document type. */
type Memos = Map<string, DocMemo>;

/** One document's memory for this reading: what was known, and what to keep for the next. */
interface DocReading {
  last: DocMemo | undefined;
  next: DocMemo;
  scan: ScanMemo;
  pieces: PieceMemo<KnownPlainMember>;
}

function docReading(memos: Memos, key: string): DocReading {
  const last = memos.get(key);
  const used = new Map<string, ScannedPackage>();
  const byMember = new Map<KnownPlainMember, ScannedPackage[]>();
  return {
    last,
    next: { members: undefined, packages: used, byMember },
    scan: { last: last?.packages, used },
    pieces: { last: last?.byMember, used: byMember },
  };
}

/** A decompressed document: its parts, and the gzip member each is when it had members. */
interface OpenedDoc {
  parts: Uint8Array[];
  members: KnownPlainMember[] | null;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  parseTagValue: false,
  parseAttributeValue: false,
  removeNSPrefix: true,
  isArray: (name) => name === "data",
});

type Node = Record<string, unknown>;

const asNode = (v: unknown): Node => (v !== null && typeof v === "object" ? (v as Node) : {});
const text = (v: unknown): string => {
  if (typeof v === "string") return v;
  if (typeof v === "number") return String(v);
  const t = asNode(v)["#text"];
  return typeof t === "string" || typeof t === "number" ? String(t) : "";
};
const attr = (v: unknown, name: string): string | undefined => {
  const a = asNode(v)[`@${name}`];
  return typeof a === "string" ? a : undefined;
};

/** createrepo's checksum type names → node's. */
function algo(type: string | undefined): string | null {
  switch (type) {
    case "sha":
    case "sha1":
      return "sha1";
    case "sha224":
    case "sha256":
    case "sha384":
    case "sha512":
    case "md5":
      return type;
    default:
      return null;
  }
}

/**
 * The big documents are scanned, not parsed into a DOM (see repodata-scan.ts): member by
 * member where the gzip members cut between elements (a remembered member is not decoded
 * again), else the joined text.
 */
function packagesOf(
  opened: OpenedDoc,
  root: string,
  children: readonly string[],
  reading: DocReading | undefined,
): { count: string | undefined; list: ScannedPackage[] } {
  const { parts, members } = opened;
  const doc =
    (members !== null &&
      scanRepodataPieces(
        parts.map((plain, i) => ({ plain, key: members[i]! })),
        root,
        children,
        reading?.scan,
        reading?.pieces,
      )) ||
    scanRepodata(Buffer.concat(parts).toString("utf8"), root, children, reading?.scan);
  return { count: doc.rootAttrs.get("packages"), list: doc.packages };
}

async function checkYumRepo(
  memos: Memos,
  root: string,
  input: CheckInput,
  f: Findings,
): Promise<void> {
  const { reader, verifier } = input;
  f.entryPoints++;
  const prefix = root === "" ? "" : `${root}/`;
  const repomdPath = `${prefix}repodata/repomd.xml`;
  const repomd = await readRequired(f, reader, repomdPath, "dnf reads it");
  if (repomd === null) return;
  if (verifier) {
    const asc = await readRequired(f, reader, `${repomdPath}.asc`, "the repo is signed");
    if (asc !== null && !(await verifier.verifyDetached(repomd, asc)))
      f.add(`${repomdPath}.asc`, "signature does not verify against repomd.xml");
  }
  const doc = asNode(parser.parse(Buffer.from(repomd).toString("utf8")));
  const data = (asNode(doc.repomd).data as Node[] | undefined) ?? [];
  if (data.length === 0) {
    f.add(repomdPath, "lists no <data>");
    return;
  }
  const opened = new Map<string, OpenedDoc>();
  const readings = new Map<string, DocReading>();
  const memoKey = (type: string) => `${input.scope ?? ""}\0${root}\0${type}`;
  for (const d of data) {
    const type = attr(d, "type") ?? "?";
    const href = attr(d.location, "href");
    const rel = href === undefined ? null : joinRel(root, href);
    if (rel === null) {
      f.add(repomdPath, `<data type="${type}"> has no usable location (${String(href)})`);
      continue;
    }
    const bytes = await reader.read(rel);
    if (bytes === null) {
      f.add(rel, `missing (${type}, named by ${repomdPath})`);
      continue;
    }
    const size = Number(text(d.size));
    if (text(d.size) !== "" && bytes.length !== size)
      f.add(rel, `is ${bytes.length} bytes, ${repomdPath} says ${size}`);
    const a = algo(attr(d.checksum, "type"));
    const want = text(d.checksum).trim().toLowerCase();
    if (a === null) f.add(repomdPath, `${type}: unknown checksum type`);
    else if (hashHex(a, bytes) !== want) {
      f.add(rel, `${a} is ${hashHex(a, bytes)}, ${repomdPath} says ${want}`);
      continue;
    }
    const reading = docReading(memos, memoKey(type));
    let parts: Uint8Array[];
    let members: KnownPlainMember[] | null;
    try {
      const decoded = await decompressRemembering(
        bytes,
        reading.last?.members,
        MAX_INDEX_BYTES,
        decompressAny,
      );
      parts = decoded.parts;
      members = decoded.members;
      reading.next.members = decoded.used ?? undefined;
    } catch (err) {
      f.add(rel, `cannot be decompressed: ${errorText(err)}`);
      continue;
    }
    const openSize = parts.reduce((n, p) => n + p.length, 0);
    if (d["open-size"] !== undefined && openSize !== Number(text(d["open-size"])))
      f.add(rel, `decompresses to ${openSize} bytes, ${repomdPath} says ${text(d["open-size"])}`);
    if (d["open-checksum"] !== undefined) {
      const oa = algo(attr(d["open-checksum"], "type"));
      const owant = text(d["open-checksum"]).trim().toLowerCase();
      if (oa !== null) {
        const h = createHash(oa);
        for (const p of parts) h.update(p);
        const got = h.digest("hex");
        if (got !== owant) f.add(rel, `decompressed ${oa} is ${got}, ${repomdPath} says ${owant}`);
      }
    }
    opened.set(type, { parts, members });
    readings.set(type, reading);
  }
  // Kept once the documents were read through (a reading that threw keeps the last memory).
  const remember = () => {
    for (const [type, r] of readings) memos.set(memoKey(type), r.next);
  };

  const primaryXml = opened.get("primary");
  if (primaryXml === undefined) {
    if (!data.some((d) => attr(d, "type") === "primary"))
      f.add(repomdPath, "lists no primary metadata");
    return;
  }
  const primaryPath = `${prefix}repodata/primary`;
  const primary = packagesOf(
    primaryXml,
    "metadata",
    ["name", "checksum", "size", "location"],
    readings.get("primary"),
  );
  if (primary.count !== undefined && Number(primary.count) !== primary.list.length)
    f.add(primaryPath, `says packages="${primary.count}" but holds ${primary.list.length}`);
  const pkgids = new Set<string>();
  const direct = reader.packageInfoSync?.bind(reader);
  for (const p of primary.list) {
    const name = p.children.get("name")?.text ?? "";
    const href = p.children.get("location")?.attrs.get("href");
    const checksum = p.children.get("checksum");
    const sum = (checksum?.text ?? "").trim().toLowerCase();
    const type = algo(checksum?.attrs.get("type"));
    pkgids.add(sum);
    if (href === undefined) {
      f.add(primaryPath, `package ${name} has no location`);
      continue;
    }
    const size = Number(p.children.get("size")?.attrs.get("package"));
    const rel = joinRel(root, href);
    const expected = {
      size: Number.isSafeInteger(size) ? size : null,
      sha256: type === "sha256" ? sum : null,
    };
    // A reader that answers at once (the publisher's) costs no promise per package.
    if (direct && rel !== null)
      comparePackageRef(f, rel, direct(rel), expected, `${primaryPath} (${name})`, href);
    else await checkPackageRef(f, reader, rel, expected, `${primaryPath} (${name})`, href);
    if (type !== "sha256") f.add(primaryPath, `package ${name}: checksum type is not sha256`);
  }
  for (const kind of ["filelists", "other"]) {
    const xml = opened.get(kind);
    if (xml === undefined) continue;
    const { count, list } = packagesOf(
      xml,
      kind === "filelists" ? "filelists" : "otherdata",
      [],
      readings.get(kind),
    );
    if (Number(count ?? list.length) !== primary.list.length || list.length !== primary.list.length)
      f.add(
        `${prefix}repodata/${kind}`,
        `describes ${list.length} packages, primary ${primary.list.length}`,
      );
    for (const p of list) {
      const id = (p.attrs.get("pkgid") ?? "").toLowerCase();
      if (!pkgids.has(id))
        f.add(`${prefix}repodata/${kind}`, `names pkgid ${id}, which primary does not list`);
    }
  }
  remember();
}

/**
 * A yum checker with a memory of its own (what it read of each document, per repo and dnf
 * repo root), so two layouts or two engines never share or evict each other's.
 */
export function createYumCheck(): (input: CheckInput) => Promise<CheckResult> {
  const memos: Memos = new Map();
  return (input) => checkYumReposWith(memos, input);
}

/** A shared checker, for tests and one-off checks. */
export const checkYumRepos = createYumCheck();

async function checkYumReposWith(memos: Memos, input: CheckInput): Promise<CheckResult> {
  const f = new Findings();
  const roots = new Set<string>();
  for (const p of input.metadataPaths) {
    const m = /^(?:(.*)\/)?repodata\/repomd\.xml$/.exec(p);
    if (m) roots.add(m[1] ?? "");
  }
  if (roots.size === 0 && input.metadataPaths.length > 0)
    f.add("repodata", "no repodata/repomd.xml: dnf has nothing to read");
  for (const root of [...roots].sort()) {
    try {
      await checkYumRepo(memos, root, input, f);
    } catch (err) {
      f.add(
        root === "" ? "repodata" : `${root}/repodata`,
        `cannot be read as dnf does: ${errorText(err)}`,
      );
    }
  }
  return f.result();
}
