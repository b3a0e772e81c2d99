/**
 * The shape of a CInP answer, for comparing the fake master with the real one: status, the
 * CInP headers present, and the body with values reduced to their kind (a datetime, an object
 * URI of some model, a sha256, a /files/ path, a string, a number...). Two masters that render
 * `tags` as a string and as an array, or a foreign key as a URI and as a name, differ in shape.
 */

export type Shape = string | { array: Shape[] } | { object: Record<string, Shape> };

const ISO_DATETIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/;
const OBJECT_URI = /^(\/api\/v2\/[A-Za-z]+\/[A-Za-z]+):(?:[^:]+:)+$/;

export function stringKind(s: string): string {
  if (ISO_DATETIME.test(s)) return "datetime";
  const uri = OBJECT_URI.exec(s);
  if (uri) return `uri ${uri[1]}`;
  if (/^[0-9a-f]{64}$/.test(s)) return "sha256";
  if (s.startsWith("/files/")) return "file path";
  return "string";
}

/** Arrays are reduced to the distinct shapes of their items, sorted. */
export function shapeOf(value: unknown): Shape {
  if (value === null) return "null";
  if (typeof value === "string") return stringKind(value);
  if (typeof value === "number" || typeof value === "boolean") return typeof value;
  if (Array.isArray(value)) {
    const items = new Map<string, Shape>();
    for (const v of value) {
      const s = shapeOf(v);
      items.set(JSON.stringify(s), s);
    }
    return { array: [...items.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, s]) => s) };
  }
  if (typeof value === "object") {
    const out: Record<string, Shape> = {};
    for (const k of Object.keys(value).sort())
      out[k] = shapeOf((value as Record<string, unknown>)[k]);
    return { object: out };
  }
  return typeof value;
}

/** A multi-object answer is keyed by object URI: key shapes by model, not by id. */
export function multiObjectShape(value: unknown): Shape {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return shapeOf(value);
  const byModel: Record<string, Shape> = {};
  for (const [k, v] of Object.entries(value)) byModel[stringKind(k)] = shapeOf(v);
  return { object: byModel };
}

/** The response headers cinp sets (and Transfer-Encoding), by lower-cased name, value kept. */
export const CINP_HEADERS = [
  "verb",
  "type",
  "cache-control",
  "count",
  "position",
  "total",
  "id-only",
  "multi-object",
  "cinp-version",
  "content-type",
  "access-control-allow-origin",
  "access-control-expose-headers",
  "transfer-encoding",
] as const;

/** Headers whose value is part of the contract (the rest: present or not). */
const VALUE_HEADERS = new Set([
  "verb",
  "type",
  "cache-control",
  "id-only",
  "multi-object",
  "cinp-version",
  "content-type",
  "access-control-allow-origin",
  "access-control-expose-headers",
  "transfer-encoding",
]);

export function headerShape(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of CINP_HEADERS) {
    const v = headers[name];
    if (v === undefined) continue;
    const value = Array.isArray(v) ? v.join(", ") : v;
    out[name] = VALUE_HEADERS.has(name) ? value : /^\d+$/.test(value) ? "number" : "string";
  }
  return out;
}

export interface RecordedAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body as text ("" for none). */
  text: string;
}

export interface AnswerShape {
  status: number;
  headers: Record<string, string>;
  /** The body's shape, or "empty", or "not json". */
  body: Shape;
}

export function answerShape(a: RecordedAnswer, multi = false): AnswerShape {
  let body: AnswerShape["body"];
  if (a.text === "") body = "empty";
  else {
    try {
      const v = JSON.parse(a.text) as unknown;
      body = multi ? multiObjectShape(v) : shapeOf(v);
    } catch {
      body = "not json";
    }
  }
  return { status: a.status, headers: headerShape(a.headers), body };
}
