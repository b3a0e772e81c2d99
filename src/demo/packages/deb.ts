/**
 * .deb files built in memory (ar of debian-binary, control.tar and data.tar, each compressed
 * as asked): the demo's sample packages and the tests' fixtures.
 */
import { gzipSync } from "node:zlib";
import type { Compression } from "../../layout/formats/compress.js";
import { xzCompressSync, zstdCompress } from "../../layout/formats/compress.js";
import { writeTar } from "../../layout/formats/tar.js";

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

/**
 * A ustar archive, root-owned, mtime 0, ended by two zero blocks: formats/tar.ts writeTar,
 * with directories marked as such.
 */
export function makeTar(entries: readonly TarInput[]): Uint8Array {
  return writeTar(
    entries.map((e) =>
      e.directory
        ? { name: e.name, mtime: 0 }
        : { name: e.name, content: e.content ?? new Uint8Array(0), mtime: 0 },
    ),
  );
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
      // xz -6 with CRC64, as dpkg-deb writes it; synchronous, as the builders are.
      return xzCompressSync(data, 6);
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
