/**
 * The CInP side of talking to a packrat master (docs/master-api.md):
 * URI helpers, error mapping, and shape checks for answers. The HTTP transport itself lives
 * in master-client.ts; everything here is pure so it can be unit-tested without a socket.
 */
import { PackratError, type ErrorCode } from "../errors.js";

/** API version this agent speaks; DESCRIBE /api/v2/ must report exactly this. */
export const CINP_API_VERSION = "2.0";
export const API_ROOT = "/api/v2/";

/** Headers every CInP request carries. */
export const CINP_HEADERS: Readonly<Record<string, string>> = {
  "CInP-Version": "0.9",
  "Accept-Charset": "utf-8",
  "Content-Type": "application/json;charset=utf-8",
};

/** The CInP error fields a master puts in a 4xx/5xx JSON body, when it sends them. */
export interface CinpErrorBody {
  cinpClass: string | null;
  cinpError: string | null;
  cinpMessage: string | null;
}

/**
 * The master answered with an HTTP error status. Callers read `status` (e.g. 404 vs 500) and the
 * CInP fields; the code is PACKRAT_MASTER_HTTP, or PACKRAT_MASTER_AUTH for credential problems.
 */
export class MasterHttpError extends PackratError {
  readonly status: number;
  readonly url: string;
  readonly cinpClass: string | null;
  readonly cinpError: string | null;
  readonly cinpMessage: string | null;

  constructor(
    code: Extract<ErrorCode, "PACKRAT_MASTER_HTTP" | "PACKRAT_MASTER_AUTH">,
    message: string,
    fields: { status: number; url: string } & CinpErrorBody,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(code, message, options);
    this.name = "MasterHttpError";
    this.status = fields.status;
    this.url = fields.url;
    this.cinpClass = fields.cinpClass;
    this.cinpError = fields.cinpError;
    this.cinpMessage = fields.cinpMessage;
  }
}

const MAX_SNIPPET = 200;

/** Printable, bounded excerpt of something the master sent, for error messages. */
export function snippet(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return clean.length > MAX_SNIPPET ? `${clean.slice(0, MAX_SNIPPET)}…` : clean;
}

/**
 * Best-effort read of an error body, in the shapes cinp 0.12 sends (server_common.py):
 * `{"message"}` (InvalidRequest, NotAuthorized, Invalid Session, ServerError; 500s add
 * `"trace"` when the master runs with DEBUG), a map of parameter → problem for bad arguments
 * (`{"timeout": "Required Paramater"}`), `{"model_path", "object_id"}` for an object that is not
 * there, `{"class", "error", "message"}` for packrat's own exceptions, a JSON string for a
 * path that is not there; or anything else (a proxy's HTML page), kept as an excerpt.
 */
export function parseCinpError(text: string): CinpErrorBody {
  const empty: CinpErrorBody = { cinpClass: null, cinpError: null, cinpMessage: null };
  if (text.trim() === "") return empty;
  try {
    const value: unknown = JSON.parse(text);
    if (isRecord(value)) {
      const pick = (k: string): string | null => {
        const v = value[k];
        if (typeof v === "string") return snippet(v);
        if (typeof v === "number") return String(v);
        return null;
      };
      if (typeof value.model_path === "string" && value.object_id !== undefined) {
        const id =
          typeof value.object_id === "string" ? value.object_id : JSON.stringify(value.object_id);
        return {
          cinpClass: "ObjectNotFound",
          cinpError: null,
          cinpMessage: snippet(`${value.model_path}:${id}: not found`),
        };
      }
      const known = {
        cinpClass: pick("class"),
        cinpError: pick("error"),
        cinpMessage: pick("message"),
      };
      if (known.cinpClass !== null || known.cinpError !== null || known.cinpMessage !== null) {
        return known;
      }
      const problems = Object.entries(value)
        .filter(([, v]) => typeof v === "string")
        .map(([k, v]) => `${k}: ${v as string}`);
      return { ...empty, cinpMessage: problems.length > 0 ? snippet(problems.join("; ")) : null };
    }
    if (typeof value === "string") return { ...empty, cinpMessage: snippet(value) };
  } catch {
    // not JSON: a proxy's HTML page or a stack trace; keep an excerpt
  }
  return { ...empty, cinpMessage: snippet(text) };
}

/** "InvalidRequest (NO_SUCH_THING): message" from whichever fields exist. */
export function describeCinpError(e: CinpErrorBody): string {
  const head = [e.cinpClass, e.cinpError ? `(${e.cinpError})` : null].filter(Boolean).join(" ");
  if (head && e.cinpMessage) return `${head}: ${e.cinpMessage}`;
  return head || e.cinpMessage || "no error details";
}

// --- URIs --------------------------------------------------------------------------------

/** An id inside a CInP URI: anything but the URI's own punctuation and whitespace. */
const ID = "[^:/()\\s]+";
const OBJECT_URI = new RegExp(`^(/api/v2/[A-Za-z0-9_]+/[A-Za-z0-9_]+):((?:${ID}:)+)$`);

export interface ParsedObjectUri {
  /** e.g. /api/v2/Repo/Repo */
  model: string;
  ids: string[];
}

/** Split `/api/v2/Repo/Repo:prod:` into model and ids; null when it is no object URI. */
export function parseObjectUri(uri: string): ParsedObjectUri | null {
  const m = OBJECT_URI.exec(uri);
  if (!m) return null;
  const ids = m[2]!.split(":").slice(0, -1);
  return { model: m[1]!, ids };
}

/** The URI of one object: `/api/v2/Repo/Mirror` + `prod` → `/api/v2/Repo/Mirror:prod:`. */
export function objectUri(model: string, id: string): string {
  return `${model}:${id}:`;
}

/** True when `id` can be placed in a CInP URI as is. */
export function isValidId(id: string): boolean {
  return new RegExp(`^${ID}$`).test(id);
}

/**
 * Group object URIs by model and chunk them into multi-object URIs of at most `max` ids
 * (`/api/v2/Package/PackageFile:12:13:14:`). Returns, for each request URI, the single-object
 * URIs it covers, so the caller can check the answer has every one.
 */
export function multiUris(
  uris: readonly string[],
  max: number,
): { uri: string; members: string[] }[] {
  // Ids in first-seen order, per model; a Set, not Array.includes: that was quadratic (0.4 s
  // of every full sync at 10,000 package files, most of one at 100,000).
  const byModel = new Map<string, Set<string>>();
  for (const uri of uris) {
    const parsed = parseObjectUri(uri);
    if (!parsed || parsed.ids.length !== 1) {
      throw new PackratError(
        "PACKRAT_MASTER_PROTOCOL",
        `${JSON.stringify(uri)} is not a CInP object URI (expected /api/v2/<Namespace>/<Model>:<id>:)`,
      );
    }
    let ids = byModel.get(parsed.model);
    if (!ids) byModel.set(parsed.model, (ids = new Set()));
    ids.add(parsed.ids[0]!);
  }
  const out: { uri: string; members: string[] }[] = [];
  for (const [model, idSet] of byModel) {
    const ids = [...idSet];
    for (let i = 0; i < ids.length; i += max) {
      const chunk = ids.slice(i, i + max);
      out.push({
        uri: `${model}:${chunk.join(":")}:`,
        members: chunk.map((id) => objectUri(model, id)),
      });
    }
  }
  return out;
}

// --- shape checks ------------------------------------------------------------------------

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads fields of one object from the master, throwing PACKRAT_MASTER_PROTOCOL that names the
 * URL, the object and the field when the master sends the wrong shape. A master that lies must
 * produce a clear error, never a TypeError deep inside the sync.
 */
export class ShapeReader {
  constructor(
    private readonly where: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  static of(value: unknown, where: string, what: string): ShapeReader {
    if (!isRecord(value)) {
      throw protocolError(where, `expected ${what} as a JSON object, got ${typeName(value)}`);
    }
    return new ShapeReader(where, value);
  }

  private fail(key: string, expected: string): never {
    throw protocolError(
      this.where,
      `field "${key}" is ${typeName(this.obj[key])}, expected ${expected}`,
    );
  }

  string(key: string): string {
    const v = this.obj[key];
    return typeof v === "string" ? v : this.fail(key, "a string");
  }

  nonEmptyString(key: string): string {
    const v = this.obj[key];
    return typeof v === "string" && v !== "" ? v : this.fail(key, "a non-empty string");
  }

  /** A string that a master may also send as null or leave out (description, release_names). */
  optionalString(key: string): string {
    const v = this.obj[key];
    if (v === undefined || v === null) return "";
    return typeof v === "string" ? v : this.fail(key, "a string or null");
  }

  stringOrNull(key: string): string | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    return typeof v === "string" ? v : this.fail(key, "a string or null");
  }

  stringArray(key: string): string[] {
    const v = this.obj[key];
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v;
    return this.fail(key, "an array of strings");
  }

  /**
   * Tag names. The real master renders PackageFile.tags as a CInP property that joins the names
   * with ", " (packrat Package/models.py `tags`: `', '.join(... order_by('name'))`), so `"prod"`,
   * `"prod, stage"`, or `""` for an untagged file; an array of names is accepted too, in case a
   * later master sends one. Sorted and without duplicates either way.
   */
  tagNames(key: string): string[] {
    const v = this.obj[key];
    let names: unknown[];
    if (typeof v === "string") names = v.split(",");
    else if (Array.isArray(v)) names = v;
    else return this.fail(key, 'tag names, as the string "a, b" or an array of strings');
    const out = new Set<string>();
    for (const n of names) {
      if (typeof n !== "string") {
        return this.fail(key, 'tag names, as the string "a, b" or an array of strings');
      }
      const name = n.trim();
      if (name !== "") out.add(name);
    }
    return [...out].sort();
  }

  /**
   * A DateTime field: cinp renders `datetime.isoformat()` (`2026-12-02T18:46:53.317804+00:00`)
   * or null. Kept as the string the master sent; refused when it is not a date at all.
   */
  dateTimeOrNull(key: string): string | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v === "string" && !Number.isNaN(Date.parse(v))) return v;
    return this.fail(key, "an ISO 8601 date and time or null");
  }

  boolean(key: string): boolean {
    const v = this.obj[key];
    return typeof v === "boolean" ? v : this.fail(key, "true or false");
  }
}

export function protocolError(where: string, what: string, cause?: unknown): PackratError {
  return new PackratError("PACKRAT_MASTER_PROTOCOL", `${where}: ${what}`, {
    hint: "the master does not follow the packrat CInP contract; check its version and logs",
    cause,
  });
}

export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "missing";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(snippet(value))}`;
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${value}`;
  return typeof value === "object" ? "an object" : typeof value;
}

/** A response header that must be a whole number (Position, Count, Total). */
export function intHeader(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): number | null {
  const raw = headers[name.toLowerCase()];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined) return null;
  if (!/^\s*\d+\s*$/.test(value)) return Number.NaN;
  return Number.parseInt(value, 10);
}
