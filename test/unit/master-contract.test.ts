/**
 * Contract tests from the real packrat master's own answers, recorded by
 * test/real-master/contract.test.ts (PACKRAT_RECORD_MASTER_FIXTURES=1) into
 * test/fixtures/real-master/recorded.json: the client is run against a replay of what the real
 * master answered it, and the fake master must answer the recorded questions in the same shape.
 * No real master is needed here.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { createMasterClient } from "../../src/sync/master-client.js";
import { answerShape, type RecordedAnswer } from "../support/cinp-shape.js";
import { startFakeMaster, type FakeMasterOptions } from "../support/fake-master.js";
import { askQuestions, clientJourney, masterQuestions } from "../support/master-questions.js";
import {
  buildE2eCatalog,
  E2E_MIRROR,
  E2E_PSK,
  seedFakeFromCatalog,
  type BuiltCatalog,
} from "../support/real-master-catalog.js";
import { startReplay, type Exchange } from "../support/recording-proxy.js";

interface Recorded {
  master: string;
  questions: Record<string, RecordedAnswer & { multi: boolean }>;
  journey: { exchanges: Exchange[]; result: Record<string, unknown> };
}

const FIXTURE = fileURLToPath(new URL("../fixtures/real-master/recorded.json", import.meta.url));
let recorded: Recorded;
let dir: string;
let built: BuiltCatalog;

beforeAll(async () => {
  recorded = JSON.parse(await readFile(FIXTURE, "utf8")) as Recorded;
  dir = await mkdtemp(path.join(tmpdir(), "packrat-contract-"));
  built = await buildE2eCatalog(path.join(dir, "files"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("the client against the real master's recorded answers", () => {
  it("reads the mirror, repos, distro versions and files exactly as it did from the real master", async () => {
    const replay = await startReplay(recorded.journey.exchanges);
    const client = createMasterClient({
      host: replay.url,
      name: E2E_MIRROR,
      psk: E2E_PSK,
      proxy: null,
      requestTimeoutMs: 5000,
      log: silentLogger(),
    });
    try {
      const result = await clientJourney(client);
      expect(replay.missed).toEqual([]);
      expect(result).toEqual(recorded.journey.result);
      const files = result.files as Record<
        string,
        { files: { packageName: string; tags: string[]; failedAt: unknown }[]; skipped: unknown[] }
      >;
      const hello = files["e2e-apt"]!.files.find((f) => f.packageName === "hello")!;
      expect(hello.tags).toEqual(["dev", "prod", "stage"]);
      expect(hello.failedAt).toBeNull();
      for (const listing of Object.values(files)) expect(listing.skipped).toEqual([]);
      const repos = result.repos as { name: string; tag: string }[];
      expect(repos.map((r) => r.tag)).toEqual(repos.map(() => "prod"));
      expect(result.downloaded).toBeGreaterThan(0);
      // Anonymous first, refused (403 on this Django), then one login as the mirror's user.
      const first = recorded.journey.exchanges.find((e) => e.method === "GET")!;
      expect([first.session, first.status]).toEqual([false, 403]);
      expect(recorded.journey.exchanges.filter((e) => e.uri.endsWith("(login)"))).toHaveLength(1);
    } finally {
      await client.close();
      await replay.close();
    }
  });
});

describe("the fake master against the real master's recorded answers", () => {
  async function differences(extra: FakeMasterOptions = {}) {
    const fake = await startFakeMaster({
      users: { [E2E_MIRROR]: E2E_PSK, root: { password: "root", actions: true } },
      anonymousReads: "refused",
      pollMode: "sleep",
      minPollTimeout: 1,
      ...extra,
    });
    try {
      const ids = await seedFakeFromCatalog(fake, built.catalog);
      const questions = masterQuestions((n) => ids.get(built.byName.get(n)!)!);
      const answers = await askQuestions(fake.url, questions);
      const out: { question: string; real: unknown; fake: unknown }[] = [];
      for (const q of questions) {
        const real = recorded.questions[q.name];
        if (!real) throw new Error(`no recorded answer to "${q.name}": record the fixture again`);
        const r = answerShape(real, real.multi);
        const f = answerShape(answers.get(q.name)!, q.multi);
        if (JSON.stringify(r) !== JSON.stringify(f))
          out.push({ question: q.name, real: r, fake: f });
      }
      return out;
    } finally {
      await fake.close();
    }
  }

  it("answers every recorded question in the real master's shape", async () => {
    expect(await differences()).toEqual([]);
  });

  it("would be caught rendering tags as an array", async () => {
    const found = await differences({ tagsAs: "array" });
    expect(found.map((d) => d.question)).toEqual(
      expect.arrayContaining([
        "GET a package file tagged dev, stage and prod",
        "GET a package file tagged dev and stage",
        "GET package files, multi-object",
      ]),
    );
  });

  it("would be caught sending Content-Length for /files/ where the dev server streams", async () => {
    const found = await differences({ fileContentLength: true });
    expect(found.map((d) => d.question)).toEqual(["GET a file's bytes"]);
  });
});
