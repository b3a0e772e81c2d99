/**
 * The Unix `ar` archive as .deb files use it (deb(5)): an 8-byte magic, then members, each a
 * 60-byte header (name, mtime, uid, gid, mode, decimal size, "`\n") and its data padded to an
 * even offset. Only headers are read here; a caller reads the members it wants.
 */
import type { ByteSource } from "../types.js";
import { FormatError } from "./format-error.js";

export interface ArMember {
  /** The member name without GNU's trailing `/` and padding. */
  name: string;
  /** Offset of the member's data in the archive. */
  offset: number;
  size: number;
}

export const AR_MAGIC = "!<arch>\n";
const HEADER = 60;
const latin1 = new TextDecoder("latin1");

/** The archive's members, in order, after checking that each lies within the source. */
export async function readArMembers(source: ByteSource, maxMembers = 64): Promise<ArMember[]> {
  const magic = await source.read(0, AR_MAGIC.length);
  if (magic.length < AR_MAGIC.length || latin1.decode(magic) !== AR_MAGIC) {
    throw new FormatError("ar", `not an ar archive (no "!<arch>" magic; ${source.size} bytes)`);
  }
  const members: ArMember[] = [];
  let pos = AR_MAGIC.length;
  while (pos < source.size) {
    if (members.length >= maxMembers)
      throw new FormatError("ar", `more than ${maxMembers} members`);
    const header = await source.read(pos, HEADER);
    if (header.length < HEADER) {
      throw new FormatError("ar", `truncated member header at offset ${pos}`);
    }
    const text = latin1.decode(header);
    if (text.slice(58, 60) !== "`\n") {
      throw new FormatError("ar", `bad member header at offset ${pos} (no "\`\\n" terminator)`);
    }
    const sizeText = text.slice(48, 58).trimEnd();
    if (!/^[0-9]{1,10}$/.test(sizeText)) {
      throw new FormatError(
        "ar",
        `member header at offset ${pos} has a bad size ${JSON.stringify(sizeText)}`,
      );
    }
    const size = Number(sizeText);
    const offset = pos + HEADER;
    if (offset + size > source.size) {
      throw new FormatError(
        "ar",
        `member at offset ${pos} claims ${size} bytes but the file has ${source.size - offset} left (truncated?)`,
      );
    }
    let name = text.slice(0, 16).trimEnd();
    if (name.endsWith("/") && name !== "/" && name !== "//") name = name.slice(0, -1);
    members.push({ name, offset, size });
    pos = offset + size + (size % 2);
  }
  return members;
}

/** Read one member's data whole. */
export async function readArMember(source: ByteSource, member: ArMember): Promise<Uint8Array> {
  const data = await source.read(member.offset, member.size);
  if (data.length !== member.size) {
    throw new FormatError(
      "ar",
      `member ${member.name} is truncated (${data.length} of ${member.size} bytes)`,
    );
  }
  return data;
}
