/**
 * Bucket notifications (src/sync/bucket-events.ts): RGW's and AWS's (SNS-wrapped) bodies are
 * read; an event wakes a source only when a HEAD agrees with it, so a forged one changes nothing.
 */
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { parseEvents, startBucketEvents, type BucketEvents } from "../../src/sync/bucket-events.js";

const rgwBody = (key: string, eventName = "ObjectCreated:Put", bucket = "pkgs") =>
  JSON.stringify({
    Records: [
      {
        eventVersion: "2.2",
        eventSource: "ceph:s3",
        eventName,
        s3: { bucket: { name: bucket }, object: { key } },
      },
    ],
  });

describe("parseEvents", () => {
  it("reads RGW's records and AWS's inside an SNS envelope (keys URL-decoded)", () => {
    expect(parseEvents(rgwBody("pool/a_1.0_all.deb"))).toEqual([
      { bucket: "pkgs", key: "pool/a_1.0_all.deb", created: true },
    ]);
    const aws = JSON.stringify({
      Type: "Notification",
      Message: JSON.stringify({
        Records: [
          {
            eventName: "ObjectRemoved:Delete",
            s3: { bucket: { name: "pkgs" }, object: { key: "pool/my+file%2B1.deb" } },
          },
        ],
      }),
    });
    expect(parseEvents(aws)).toEqual([
      { bucket: "pkgs", key: "pool/my file+1.deb", created: false },
    ]);
  });

  it("refuses a body that is not an S3 event, and skips records of other kinds", () => {
    expect(() => parseEvents("{}")).toThrow(/no Records/);
    expect(() => parseEvents("not json")).toThrow();
    expect(parseEvents(rgwBody("pool/x.deb", "ObjectLifecycle:Expiration"))).toEqual([]);
  });
});

describe("startBucketEvents", () => {
  let events: BucketEvents | null = null;
  afterEach(async () => {
    await events?.close();
    events = null;
  });

  it("wakes a source only for its bucket and prefix, and only when a HEAD agrees", async () => {
    events = await startBucketEvents({ host: "127.0.0.1", port: 0, log: silentLogger() });
    const present = new Set(["a_1.0_all.deb"]);
    let woken = 0;
    const heads: string[] = [];
    events.subscribe({
      bucket: "pkgs",
      prefix: "pool/",
      exists: (rel) => {
        heads.push(rel);
        return Promise.resolve(present.has(rel));
      },
      onChange: () => woken++,
    });
    const post = (body: string) => fetch(events!.url, { method: "POST", body });
    const settled = async (n: number) => {
      while (events!.counts.received < n) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setImmediate(r));
    };
    expect((await post(rgwBody("pool/a_1.0_all.deb"))).status).toBe(200);
    await settled(1);
    expect(woken).toBe(1);
    // Forged: an object that is not there. Checked, refused, no wake.
    await post(rgwBody("pool/forged_6.6_all.deb"));
    await settled(2);
    expect(woken).toBe(1);
    expect(events.counts.refused).toBe(1);
    // Another bucket, or outside the prefix: not even checked.
    await post(rgwBody("pool/a_1.0_all.deb", "ObjectCreated:Put", "other"));
    await post(rgwBody("mirror/apt/InRelease"));
    await settled(4);
    expect(heads).toEqual(["a_1.0_all.deb", "forged_6.6_all.deb"]);
    expect(woken).toBe(1);
    // A removal the HEAD confirms wakes it.
    present.delete("a_1.0_all.deb");
    await post(rgwBody("pool/a_1.0_all.deb", "ObjectRemoved:Delete"));
    await settled(5);
    expect(woken).toBe(2);
    expect((await post("garbage")).status).toBe(400);
    expect((await fetch(events.url)).status).toBe(405);
  });
});
