/**
 * .deb files built in memory (ar of debian-binary, control.tar and data.tar, each compressed
 * as asked): the demo's sample packages and the tests' fixtures.
 */
import { execFileSync } from "node:child_process";
import { gzipSync } from "node:zlib";
import type { Compression } from "../../layout/formats/compress.js";
import { zstdCompress } from "../../layout/formats/compress.js";

const encoder = new TextEncoder();

export interface DebSpec {
  /** The control file's text, exactly (must end with "\n"). */
  control: string;
  /** Extra files for the data tarball: path (relative, no leading "./") → content. */
  files?: Record<string, string | Uint8Array>;
  /** Compression of control.tar (dpkg-deb: of both members). Default gzip. */
  compression?: Compression;
}

/** A control file from fields (multi-line values: continuation lines as given). */
export function controlText(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}\n`)
    .join("");
}

// ---- tar and ar writers -------------------------------------------------------------------

export interface TarInput {
  name: string;
  content?: Uint8Array;
  directory?: boolean;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/** A ustar archive (names ≤ 100 bytes), root-owned, mtime 0, ended by two zero blocks. */
export function makeTar(entries: readonly TarInput[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const entry of entries) {
    const content = entry.content ?? new Uint8Array(0);
    const header = new Uint8Array(512);
    const put = (offset: number, text: string) => header.set(encoder.encode(text), offset);
    put(0, entry.name);
    put(100, octal(entry.directory ? 0o755 : 0o644, 8));
    put(108, octal(0, 8));
    put(116, octal(0, 8));
    put(124, octal(entry.directory ? 0 : content.length, 12));
    put(136, octal(0, 12));
    put(148, "        ");
    put(156, entry.directory ? "5" : "0");
    put(257, "ustar\0");
    put(263, "00");
    put(265, "root");
    put(297, "root");
    let sum = 0;
    for (const b of header) sum += b;
    put(148, sum.toString(8).padStart(6, "0") + "\0 ");
    blocks.push(header);
    if (!entry.directory && content.length > 0) {
      const padded = new Uint8Array(Math.ceil(content.length / 512) * 512);
      padded.set(content);
      blocks.push(padded);
    }
  }
  blocks.push(new Uint8Array(1024));
  return concat(blocks);
}

/** An ar archive as dpkg-deb writes it (mtime 0, root, mode 100644). */
export function makeAr(members: readonly { name: string; content: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode("!<arch>\n")];
  for (const m of members) {
    const header =
      m.name.padEnd(16) +
      "0".padEnd(12) +
      "0".padEnd(6) +
      "0".padEnd(6) +
      "100644".padEnd(8) +
      String(m.content.length).padEnd(10) +
      "`\n";
    parts.push(encoder.encode(header), m.content);
    if (m.content.length % 2 === 1) parts.push(encoder.encode("\n"));
  }
  return concat(parts);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function compressWith(data: Uint8Array, compression: Compression): Uint8Array {
  switch (compression) {
    case "none":
      return data;
    case "gzip":
      return gzipSync(data);
    case "xz":
      // The real xz, as dpkg-deb would: test builders stay synchronous.
      return execFileSync("xz", ["-c", "-6", "--check=crc64"], { input: data, maxBuffer: 1 << 30 });
    case "zstd":
      return zstdCompress(data);
  }
}

const SUFFIX: Record<Compression, string> = { none: "", gzip: ".gz", xz: ".xz", zstd: ".zst" };

/** A .deb built in memory: no processes, no disk. */
export function buildDeb(spec: DebSpec): Uint8Array {
  const compression = spec.compression ?? "gzip";
  const controlTar = makeTar([
    { name: "./", directory: true },
    { name: "./control", content: encoder.encode(spec.control) },
  ]);
  const dataEntries: TarInput[] = [{ name: "./", directory: true }];
  for (const [name, content] of Object.entries(spec.files ?? {})) {
    dataEntries.push({
      name: `./${name}`,
      content: typeof content === "string" ? encoder.encode(content) : content,
    });
  }
  return makeAr([
    { name: "debian-binary", content: encoder.encode("2.0\n") },
    { name: `control.tar${SUFFIX[compression]}`, content: compressWith(controlTar, compression) },
    { name: "data.tar.gz", content: gzipSync(makeTar(dataEntries)) },
  ]);
}

// ---- the real dpkg-deb ----------------------------------------------------------------------
