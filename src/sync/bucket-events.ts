/**
 * Bucket notifications pushed to the agent over HTTP: Ceph RGW's (a topic made with the
 * SNS-compatible CreateTopic and a `push-endpoint` attribute, then a bucket notification
 * configuration) and AWS's through an SNS HTTP subscription (the S3 event inside the SNS
 * envelope's `Message`). An event is a hint, never trusted alone: each one is checked with a
 * HEAD of the object it names (present for ObjectCreated, absent for ObjectRemoved) before it
 * wakes the source, and even then the source lists the bucket itself and takes only what it
 * finds and hashes. A forged event therefore changes nothing, and one that cannot be checked
 * (the bucket is down) is dropped: the periodic listing catches up.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describeError } from "../errors.js";
import type { Logger } from "../log.js";

export interface EventSubscriber {
  bucket: string;
  /** Key prefix of the source ("" or ending in "/"). */
  prefix: string;
  /** HEAD of a key relative to the prefix. */
  exists(rel: string): Promise<boolean>;
  onChange(): void;
}

export interface BucketEvents {
  /** `http://host:port/` the server should push to. */
  readonly url: string;
  subscribe(subscriber: EventSubscriber): () => void;
  /** Events received, and how many of them a HEAD confirmed (status, tests). */
  readonly counts: { received: number; confirmed: number; refused: number };
  close(): Promise<void>;
}

/** What one S3 event record says. */
interface EventRecord {
  bucket: string;
  key: string;
  created: boolean;
}

/** Bodies larger than this are refused (an event batch is a few KiB). */
const MAX_BODY = 1 << 20;

export async function startBucketEvents(opts: {
  host: string;
  port: number;
  log: Logger;
}): Promise<BucketEvents> {
  const subscribers = new Set<EventSubscriber>();
  const counts = { received: 0, confirmed: 0, refused: 0 };

  const handle = async (record: EventRecord): Promise<void> => {
    counts.received++;
    for (const s of subscribers) {
      if (s.bucket !== record.bucket || !record.key.startsWith(s.prefix)) continue;
      const rel = record.key.slice(s.prefix.length);
      let present: boolean;
      try {
        present = await s.exists(rel);
      } catch (err) {
        opts.log.debug(
          { bucket: record.bucket, key: record.key, err: describeError(err) },
          "bucket event not checked (HEAD failed); the next listing catches up",
        );
        continue;
      }
      if (present !== record.created) {
        counts.refused++;
        opts.log.warn(
          { bucket: record.bucket, key: record.key, created: record.created },
          "bucket event refused: the object is not as the event says (forged, or already changed again)",
        );
        continue;
      }
      counts.confirmed++;
      s.onChange();
    }
  };

  const server = http.createServer((req, res) => {
    if (req.method !== "POST") {
      res.writeHead(405, { Allow: "POST" }).end();
      return;
    }
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end();
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (res.writableEnded) return;
      let records: EventRecord[];
      try {
        records = parseEvents(Buffer.concat(chunks).toString("utf8"));
      } catch (err) {
        opts.log.warn({ err: describeError(err) }, "bucket event ignored: not an S3 event");
        res.writeHead(400).end();
        return;
      }
      // Answer at once: the server must not wait on our HEADs (RGW retries slow endpoints).
      res.writeHead(200).end();
      void Promise.all(records.map(handle));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}/`,
    counts,
    subscribe(s) {
      subscribers.add(s);
      return () => subscribers.delete(s);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The records of an S3 event body (RGW's, or AWS's in an SNS envelope); throws if none. */
export function parseEvents(body: string): EventRecord[] {
  let doc = JSON.parse(body) as unknown;
  // SNS wraps the S3 event as a string in Message; a SubscriptionConfirmation has no records.
  if (isObject(doc) && typeof doc.Message === "string") doc = JSON.parse(doc.Message) as unknown;
  if (!isObject(doc) || !Array.isArray(doc.Records)) throw new Error("no Records array");
  const out: EventRecord[] = [];
  for (const r of doc.Records as unknown[]) {
    if (!isObject(r) || typeof r.eventName !== "string" || !isObject(r.s3)) continue;
    const { bucket: b, object: o } = r.s3;
    const bucket = isObject(b) ? b.name : undefined;
    const key = isObject(o) ? o.key : undefined;
    if (typeof bucket !== "string" || typeof key !== "string") continue;
    const name = r.eventName.replace(/^s3:/, "");
    if (!name.startsWith("ObjectCreated") && !name.startsWith("ObjectRemoved")) continue;
    out.push({ bucket, key: eventKey(key), created: name.startsWith("ObjectCreated") });
  }
  return out;
}

/**
 * AWS sends the key URL-encoded (spaces as "+"); RGW sends it as it is. A key that decodes
 * differently is tried as sent too by the HEAD check's outcome: a wrong guess is refused, and
 * the listing still finds the object.
 */
function eventKey(key: string): string {
  if (!/%[0-9A-Fa-f]{2}|\+/.test(key)) return key;
  try {
    return decodeURIComponent(key.replace(/\+/g, " "));
  } catch {
    return key;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
