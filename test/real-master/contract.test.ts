/**
 * Pins the fake master (test/support/fake-master.ts) to the real packrat master: both hold the
 * same catalog, both are asked the same questions (every object and call the agent uses, and
 * their errors), and their answers must have the same shape: status, CInP headers, field names
 * and the kind of every value (a string, a datetime, an object URI of which model, ...). If the
 * fake rendered `tags` as an array again, or a foreign key as a name, this fails.
 *
 * With PACKRAT_RECORD_MASTER_FIXTURES=1 it also records the real master's answers into
 * test/fixtures/real-master/recorded.json, which the unit tests (master-contract.test.ts) use
 * where no real master runs.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { createMasterClient } from "../../src/sync/master-client.js";
import { answerShape, type RecordedAnswer } from "../support/cinp-shape.js";
import { startFakeMaster, type FakeMaster } from "../support/fake-master.js";
import { askQuestions, clientJourney, masterQuestions } from "../support/master-questions.js";
import {
  buildE2eCatalog,
  E2E_MIRROR,
  E2E_PSK,
  seedFakeFromCatalog,
  type BuiltCatalog,
} from "../support/real-master-catalog.js";
import { realMasterHome, startRealMaster, type RealMaster } from "../support/real-master.js";
import { startRecordingProxy } from "../support/recording-proxy.js";

const home = realMasterHome();
const FIXTURE = fileURLToPath(new URL("../fixtures/real-master/recorded.json", import.meta.url));

describe.skipIf(home === null)("the fake master against the real one", () => {
  let dir: string;
  let real: RealMaster;
  let fake: FakeMaster;
  let built: BuiltCatalog;
  let realIds: Map<string, number>;
  let fakeIds: Map<string, number>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "packrat-contract-"));
    built = await buildE2eCatalog(path.join(dir, "files"));
    real = await startRealMaster("sqlite");
    const report = await real.load(built.catalog);
    realIds = new Map([...built.byName].map(([n, id]) => [n, report.id_map[String(id)]!]));
    fake = await startFakeMaster({
      users: { [E2E_MIRROR]: E2E_PSK, root: { password: "root", actions: true } },
      anonymousReads: "refused",
      pollMode: "sleep",
      minPollTimeout: 1,
    });
    const byCatalogId = await seedFakeFromCatalog(fake, built.catalog);
    fakeIds = new Map([...built.byName].map(([n, id]) => [n, byCatalogId.get(id)!]));
  }, 300_000);

  afterAll(async () => {
    await fake?.close();
    await real?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers every question with the shape the real master answers it", async () => {
    const questions = masterQuestions((n) => realIds.get(n)!);
    const fromReal = await askQuestions(real.url, questions);
    const fromFake = await askQuestions(
      fake.url,
      masterQuestions((n) => fakeIds.get(n)!),
    );
    const differences: unknown[] = [];
    for (const q of questions) {
      const r = answerShape(fromReal.get(q.name)!, q.multi);
      const f = answerShape(fromFake.get(q.name)!, q.multi);
      if (JSON.stringify(r) !== JSON.stringify(f))
        differences.push({ question: q.name, real: r, fake: f });
    }
    expect(differences).toEqual([]);
    // The shapes that matter most, spelled out.
    const file = JSON.parse(
      fromReal.get("GET a package file tagged dev, stage and prod")!.text,
    ) as Record<string, unknown>;
    expect(file.tags).toBe("dev, prod, stage");
    expect(JSON.parse(fromReal.get("GET a package file tagged dev and stage")!.text)).toMatchObject(
      { tags: "dev, stage" },
    );
    expect(JSON.parse(fromReal.get("GET a repo")!.text)).toMatchObject({
      tag: "/api/v2/Attrib/Tag:prod:",
    });

    if (process.env.PACKRAT_RECORD_MASTER_FIXTURES === "1") {
      const proxy = await startRecordingProxy(real.url);
      const client = createMasterClient({
        host: proxy.url,
        name: E2E_MIRROR,
        psk: E2E_PSK,
        proxy: null,
        requestTimeoutMs: 30_000,
        log: silentLogger(),
      });
      const journey = await clientJourney(client);
      await client.close();
      await proxy.close();
      const questionAnswers: Record<string, RecordedAnswer & { multi: boolean }> = {};
      for (const q of questions)
        questionAnswers[q.name] = { ...fromReal.get(q.name)!, multi: q.multi === true };
      await writeFile(
        FIXTURE,
        `${JSON.stringify(
          {
            master:
              "vspeter/packrat@3e72655 on pnhowe/cinp-python@c8fd47e (cinp 0.12), Django 3.2 (Debian 12), SQLite",
            recordedAt: new Date().toISOString(),
            questions: questionAnswers,
            journey: { exchanges: proxy.exchanges, result: journey },
          },
          null,
          1,
        )}\n`,
      );
    }
  }, 120_000);
});
