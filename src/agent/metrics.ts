/**
 * Optional Prometheus endpoint (metrics_listen): sync counts and durations, files and bytes,
 * repairs, failures, and freshness gauges read from the state DB at scrape time.
 */
import http from "node:http";
import client from "prom-client";
import { PackratError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ReplicaStatus } from "../publish/replica.js";
import type { StateStore } from "../state/state-store.js";
import type { SyncReport } from "../sync/engine.js";

export interface MetricsServer {
  /** host:port actually bound (metrics_listen may say port 0). */
  readonly address: string;
  recordSync(report: SyncReport | null, err: unknown): void;
  close(): Promise<void>;
}

export async function startMetricsServer(
  listen: string,
  store: StateStore,
  log: Logger,
  /** The bucket of [s3], if any: how far behind root_dir it is. */
  bucketStatus: () => ReplicaStatus | null = () => null,
): Promise<MetricsServer> {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: "packrat_agent_process_" });
  const syncs = new client.Counter({
    name: "packrat_agent_syncs_total",
    help: "Sync passes by kind and result",
    labelNames: ["kind", "result"],
    registers: [registry],
  });
  const duration = new client.Histogram({
    name: "packrat_agent_sync_duration_seconds",
    help: "Duration of sync passes",
    labelNames: ["kind"],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [registry],
  });
  const downloads = new client.Counter({
    name: "packrat_agent_downloads_total",
    help: "Package files downloaded and verified",
    registers: [registry],
  });
  const repaired = new client.Counter({
    name: "packrat_agent_repairs_total",
    help: "Files on disk found wrong and fetched again",
    registers: [registry],
  });
  const failures = new client.Counter({
    name: "packrat_agent_download_failures_total",
    help: "Package files that failed every retry",
    registers: [registry],
  });
  const publishes = new client.Counter({
    name: "packrat_agent_publishes_total",
    help: "Repo generations published",
    registers: [registry],
  });
  new client.Gauge({
    name: "packrat_agent_seconds_since_last_successful_sync",
    help: "Seconds since the last full sync that succeeded",
    registers: [registry],
    collect() {
      const last = store.lastSuccessfulSyncRun("full");
      this.set(last?.finishedAt ? (Date.now() - last.finishedAt) / 1000 : -1);
    },
  });
  new client.Gauge({
    name: "packrat_agent_seconds_since_master_contact",
    help: "Seconds since the master last answered",
    registers: [registry],
    collect() {
      const times = store.listRepos().map((r) => r.lastMasterContact ?? 0);
      const last = Math.max(0, ...times);
      this.set(last > 0 ? (Date.now() - last) / 1000 : -1);
    },
  });

  new client.Gauge({
    name: "packrat_agent_package_files",
    help:
      "Package files the master lists per repo: all of them (listed), those it marks failed or " +
      "deprecated, and those the agent skipped (unsafe name, malformed object)",
    labelNames: ["repo", "state"],
    registers: [registry],
    collect() {
      this.reset();
      const counts = new Map<string, Record<string, number>>();
      const of = (repo: string) => {
        let c = counts.get(repo);
        if (!c) counts.set(repo, (c = { listed: 0, failed: 0, deprecated: 0, skipped: 0 }));
        return c;
      };
      for (const { repo } of store.listRepos()) of(repo.name);
      for (const row of store.listPackageFiles()) {
        const c = of(row.repo);
        c.listed!++;
        if (row.file.failedAt !== null) c.failed!++;
        if (row.file.deprecatedAt !== null) c.deprecated!++;
      }
      for (const row of store.listSkippedFiles()) of(row.repo).skipped!++;
      for (const [repo, c] of counts)
        for (const [state, n] of Object.entries(c)) this.set({ repo, state }, n);
    },
  });

  new client.Gauge({
    name: "packrat_agent_bucket_generations_behind",
    help: "Generations a repo's bucket copy is behind root_dir (0 when up to date)",
    labelNames: ["repo"],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of bucketStatus()?.repos ?? [])
        this.set({ repo: r.repo }, Math.max(0, r.diskGeneration - (r.bucketGeneration ?? 0)));
    },
  });
  new client.Gauge({
    name: "packrat_agent_bucket_seconds_since_success",
    help: "Seconds since the last bucket round that left nothing behind (absent without [s3])",
    registers: [registry],
    collect() {
      this.reset();
      const st = bucketStatus();
      if (st?.lastSuccessAt) this.set((Date.now() - st.lastSuccessAt) / 1000);
    },
  });
  const bucketUploads = new client.Counter({
    name: "packrat_agent_bucket_uploads_total",
    help: "Objects uploaded to the bucket, by result",
    labelNames: ["result"],
    registers: [registry],
  });
  const bucketDeletes = new client.Counter({
    name: "packrat_agent_bucket_deletes_total",
    help: "Objects deleted from the bucket after their grace",
    registers: [registry],
  });

  const [host, portText] = splitListen(listen);
  const server = http.createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("see /metrics\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "Content-Type": registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new PackratError("PACKRAT_CONFIG_INVALID", `metrics_listen ${listen}: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    server.listen(Number(portText), host, resolve);
  });
  const bound = server.address();
  const address = typeof bound === "object" && bound ? `${host}:${bound.port}` : listen;
  log.info({ listen: address }, "metrics at /metrics");
  return {
    address,
    recordSync(report, err) {
      if (!report) {
        syncs.inc({ kind: "full", result: err ? "failed" : "ok" });
        return;
      }
      syncs.inc({
        kind: report.kind,
        result: report.refused ? "refused" : report.failed.length ? "failed" : "ok",
      });
      duration.observe({ kind: report.kind }, report.durationMs / 1000);
      downloads.inc(report.downloaded);
      repaired.inc(report.repaired);
      failures.inc(report.failed.length);
      publishes.inc(report.published.length);
      for (const b of report.buckets) {
        bucketUploads.inc({ result: "ok" }, b.uploaded);
        bucketUploads.inc({ result: "failed" }, b.failed.length);
        bucketDeletes.inc(b.deleted);
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function splitListen(listen: string): [string, string] {
  const i = listen.lastIndexOf(":");
  return [listen.slice(0, i).replace(/^\[|\]$/g, "") || "127.0.0.1", listen.slice(i + 1)];
}
