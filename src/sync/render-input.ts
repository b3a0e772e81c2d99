/**
 * What each layout is given to render (issue 25): the packages of a repo that are on disk and
 * parse, in URI order, with their metadata, paths and package signatures. Metadata is parsed
 * once per SHA-256 and cached in the state DB; a pass whose inputs are unchanged reads none of
 * it (the layout asks through a getter), and package signatures are made once per SHA-256 and
 * key and kept in memory for the repo's next publish.
 */
import path from "node:path";
import PQueue from "p-queue";
import { describeError, isPackratError } from "../errors.js";
import type { ByteSource, PublishedPackage, RepoLayout } from "../layout/types.js";
import { metaCacheKey } from "../layout/types.js";
import type { DistroVersion } from "../types.js";
import type { Applied } from "./apply.js";
import { openFileSource, statInfoSync, type StatInfo } from "./disk.js";
import type { EngineDeps } from "./engine-types.js";
import { assertSafeRelativePath } from "./filename-guard.js";
import type { RepoPlan } from "./plan.js";
import type { PublishRequest } from "./publish.js";
import type { DesiredFile } from "./reconcile.js";

/**
 * One package as a layout is given it, its metadata read from the state DB only when asked.
 * A class, not an object literal with a spread and a getter: V8 builds those on a slow path
 * and gives them dictionary properties, which cost 50 ms per 10,000 packages to make and slow
 * every layout's reads of them (issue 25, measured with a CPU profile of +1 pacman).
 */
class InputPackage implements PublishedPackage {
  signature?: Uint8Array;
  constructor(
    readonly file: PublishedPackage["file"],
    readonly distroVersion: DistroVersion,
    readonly paths: string[],
    readonly size: number,
    readonly sha256: string,
    private loaded: PublishedPackage["meta"] | null,
    private readonly load: () => PublishedPackage["meta"],
  ) {}

  get meta(): PublishedPackage["meta"] {
    return (this.loaded ??= this.load());
  }
}

/** Package files parsed at once on a cold sync (reads overlap; parsing is on the main thread). */
const PARSE_CONCURRENCY = 8;

/**
 * The package signatures of one request, by sha256, all of the request's signer: the last
 * publish's, the ones used, the ones made.
 */
interface SignatureMemos {
  last: ReadonlyMap<string, Uint8Array>;
  used: Map<string, Uint8Array>;
  /** Made in this request, to cache in the state DB when it is complete. */
  made: { sha256: string; signer: string; signature: Uint8Array }[];
}

/** The signature of this sha256 the last or this request used (the memos are one signer's). */
function rememberedSignature(sha256: string, memos: SignatureMemos): Uint8Array | undefined {
  const memo = memos.used.get(sha256) ?? memos.last.get(sha256);
  if (memo !== undefined) memos.used.set(sha256, memo);
  return memo;
}

export class RenderInputs {
  private readonly now: () => number;
  /**
   * Package signatures by repo, the signer's fingerprint that made them, then by sha256, as the
   * last publish used them; each publish keeps only the ones it used (memory: one repo's worth,
   * ~100 bytes a package). Keyed by the sha256 string alone: the same string object every
   * pass, whose hash V8 keeps, where a "fingerprint:sha256" key was a new string to hash per
   * package per pass.
   */
  private readonly signatures = new Map<
    string,
    { fingerprint: string; bySha: Map<string, Uint8Array> }
  >();

  constructor(
    private readonly deps: EngineDeps,
    private readonly root: string,
  ) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * The publish request of a repo: every package the plan serves that is on disk (applied) and
   * parses, with its metadata (cached by SHA-256, parsed now if new), its paths within the repo
   * and, for layouts that want one, its detached signature.
   */
  async request(
    plan: RepoPlan,
    applied: Applied,
    { quick, warm }: { quick: boolean; warm: boolean },
  ): Promise<PublishRequest> {
    const { store, layoutOptions, signer } = this.deps;
    const { failed, observations, derived } = applied;
    const wantsSignatures = plan.layout.derive?.wants(layoutOptions, signer)?.signature === true;
    const dir = assertSafeRelativePath(plan.repo.filesystemDir, `repo ${plan.repo.name}`);
    const packages: PublishedPackage[] = [];
    const metaKey = metaCacheKey(plan.layout);
    // Cached metadata is read only when the layout asks for it: a pass whose inputs are
    // unchanged does not render, and a render with warm caches asks for few (JSON.parse of
    // 10,000 metas costs more than the rest of a one-package pass).
    const metaStatus = store.packageMetaStatus(metaKey);
    const lastSignatures = this.signatures.get(plan.repo.name);
    const signatureMemos: SignatureMemos = {
      last:
        lastSignatures !== undefined && lastSignatures.fingerprint === signer?.fingerprint
          ? lastSignatures.bySha
          : wantsSignatures && signer
            ? // A process's first publish of the repo: the cached ones in one query, not one
              // query per package (150 ms of a no-change sync of 10,000 pacman packages).
              store.listPackageSignatures(plan.layout.managerType, signer.fingerprint)
            : new Map<string, Uint8Array>(),
      used: new Map<string, Uint8Array>(),
      made: [],
    };
    const present: { d: DesiredFile; canonical: string; st: StatInfo }[] = [];
    for (const d of [...plan.desired].sort((a, b) => a.file.uri.localeCompare(b.file.uri))) {
      if (failed.has(d.file.uri)) continue;
      const canonical = d.paths[0];
      if (canonical === undefined) continue;
      const size = derived.get(canonical);
      if (size !== undefined) {
        present.push({ d, canonical, st: { size, mtimeNs: "0", ino: "0" } });
        continue;
      }
      // A file fetched in this pass (no observation, or one that did not match) has not been
      // stat'ed since: stat it. A file hashed and found right keeps the stat it had.
      const seen = observations.get(canonical);
      const fetched =
        seen === undefined ||
        seen.stat === null ||
        (seen.hashed !== undefined && seen.hashed !== d.expectedSha256);
      const st = fetched ? statInfoSync(path.join(this.root, canonical)) : seen.stat;
      if (st !== null) present.push({ d, canonical, st });
    }
    // A new file is signed from the bytes read for its parse: one read of it, not two.
    const parsed = await this.parseNew(
      plan.layout,
      present.filter(({ d }) => !metaStatus.has(d.expectedSha256)),
      wantsSignatures ? signatureMemos : null,
    );
    for (const { d, canonical, st } of present) {
      const status = metaStatus.get(d.expectedSha256);
      if (status === false) continue; // failed to parse: logged when it did
      if (status === undefined && !parsed.get(d.expectedSha256)) continue;
      // One remembered already: no promise per package per pass.
      const signature = wantsSignatures
        ? (rememberedSignature(d.expectedSha256, signatureMemos) ??
          (await this.packageSignature(plan.layout, d, canonical, signatureMemos)))
        : undefined;
      const sha256 = d.expectedSha256;
      const pkg = new InputPackage(
        d.file,
        plan.distroVersions.get(d.file.distroVersionUri) as DistroVersion,
        d.paths.map((p) => p.slice(dir.length + 1)),
        st.size,
        sha256,
        parsed.get(sha256) ?? null,
        () => store.getPackageMeta(sha256, metaKey)?.meta ?? {},
      );
      if (signature) pkg.signature = signature;
      packages.push(pkg);
    }
    if (wantsSignatures && signer)
      this.signatures.set(plan.repo.name, {
        fingerprint: signer.fingerprint,
        bySha: signatureMemos.used,
      });
    // Signatures made now, cached in one transaction: one statement each, every one its own
    // commit, cost 1.3 s of a cold 10,000-package pacman publish.
    if (signatureMemos.made.length > 0) {
      store.transaction(() => {
        for (const m of signatureMemos.made)
          store.putPackageSignature(m.sha256, plan.layout.managerType, m.signer, m.signature);
      });
    }
    return {
      layout: plan.layout,
      repoDir: dir,
      // A raised metaVersion re-renders (re-parsed metadata leaves the package list as it
      // was); an unversioned layout keeps the salt, and so its published generation.
      salt: JSON.stringify([
        plan.layout.optionsUsed.map((k) => [k, layoutOptions[k]]),
        signer?.fingerprint ?? null,
        ...(metaKey === plan.layout.managerType ? [] : [metaKey]),
      ]),
      warmOnly: warm,
      inPlace: this.deps.inPlaceRepos?.has(plan.repo.name) === true,
      input: {
        repo: plan.repo,
        distroVersions: plan.distroVersions,
        packages,
        signer,
        options: layoutOptions,
        now: new Date(this.now()),
        quick,
      },
    };
  }

  /**
   * The detached signature a layout derives for a package file (RepoLayout.derive), made once
   * per (sha256, layout, key) and kept in the state DB's package_signatures (written by
   * request(), all of one request together).
   */
  private async packageSignature(
    layout: RepoLayout,
    d: DesiredFile,
    rel: string,
    memos: SignatureMemos,
    /** The file, already open (parseNew); otherwise it is opened if a signature is to be made. */
    opened?: ByteSource,
  ): Promise<Uint8Array | undefined> {
    const { signer, store, layoutOptions } = this.deps;
    if (!signer || !layout.derive) return undefined;
    // The same object every pass (a layout's render cache may compare by identity first), and no
    // state DB read per package per pass.
    const memoKey = d.expectedSha256;
    const memo = rememberedSignature(memoKey, memos);
    if (memo !== undefined) return memo;
    const cached = store.getPackageSignature(
      d.expectedSha256,
      layout.managerType,
      signer.fingerprint,
    );
    if (cached) {
      memos.used.set(memoKey, cached);
      return cached;
    }
    const source = opened ?? (await openFileSource(path.join(this.root, rel)));
    let signature: Uint8Array | undefined;
    try {
      signature = (await layout.derive.run(source, d.file.filename, signer, layoutOptions))
        .signature;
    } finally {
      if (opened === undefined) await (source as ByteSource & { close(): Promise<void> }).close();
    }
    if (!signature) return undefined;
    memos.used.set(memoKey, signature);
    memos.made.push({ sha256: d.expectedSha256, signer: signer.fingerprint, signature });
    return signature;
  }

  /**
   * Parse the package files whose sha256 has no cached metadata yet, PARSE_CONCURRENCY at a
   * time (a cold sync of 10,000 packages parsed them one after another), and cache the results
   * in one transaction. A file that does not parse is cached as an error, logged once, and
   * left out of the index.
   */
  private async parseNew(
    layout: RepoLayout,
    files: readonly { d: DesiredFile; canonical: string }[],
    signatures: SignatureMemos | null,
  ): Promise<Map<string, Record<string, unknown> | null>> {
    const { store, log } = this.deps;
    const out = new Map<string, Record<string, unknown> | null>();
    const errors = new Map<string, string>();
    const queue = new PQueue({ concurrency: PARSE_CONCURRENCY });
    const bySha = new Map(files.map((f) => [f.d.expectedSha256, f]));
    let signingFailure: { err: unknown } | null = null;
    const progress = this.deps.progress;
    const repoName = files[0]?.d.repo;
    if (repoName !== undefined) progress?.onIndexPlan?.(repoName, bySha.size);
    await Promise.all(
      [...bySha.values()].map(({ d, canonical }) =>
        queue.add(async () => {
          const source = await openFileSource(path.join(this.root, canonical));
          try {
            try {
              // Every file here was hashed, vouched for by its fingerprint, or downloaded and
              // verified in this pass (apply.ts): a parser need not hash it again.
              const verified = { ...source, verifiedSha256: d.expectedSha256 };
              out.set(d.expectedSha256, await layout.parse(verified, d.file.filename));
            } catch (err) {
              if (!isPackratError(err)) throw err;
              out.set(d.expectedSha256, null);
              errors.set(d.expectedSha256, describeError(err));
              log.error(
                { repo: d.repo, file: canonical, code: err.code },
                `left out of the index: ${describeError(err)}`,
              );
            }
            // Only a file that parses is published, and so signed. A signing failure is not
            // the file's: it fails the publish (after the parses are cached), as in request().
            if (signatures && out.get(d.expectedSha256))
              await this.packageSignature(layout, d, canonical, signatures, source).catch(
                (err: unknown) => void (signingFailure ??= { err }),
              );
          } finally {
            await source.close();
            progress?.onIndexed?.();
          }
        }),
      ),
    ).finally(() => {
      if (repoName !== undefined) progress?.onIndexDone?.();
    });
    store.transaction(() => {
      for (const [sha256, meta] of out)
        store.putPackageMeta(sha256, metaCacheKey(layout), meta, errors.get(sha256) ?? null);
    });
    if (signingFailure !== null) throw (signingFailure as { err: unknown }).err;
    return out;
  }
}
