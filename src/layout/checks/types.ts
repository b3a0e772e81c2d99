/**
 * Client-view checks: a second reading of a published repo, done the way apt, dnf, pacman
 * and pip read it (entry point, signature, every index by size and hash, every package by
 * size and hash). They share no code with the renderers, so a renderer bug is caught rather
 * than repeated. Pure: the tree comes in through a TreeReader (the publisher overlays the
 * new generation on the disk; `verify` reads the disk), signatures through a verifier.
 */

/** One thing a client would trip over, at a path relative to the repo directory. */
export interface CheckProblem {
  path: string;
  problem: string;
}

export interface PackageInfo {
  size: number;
  sha256: string;
}

export interface TreeReader {
  /** The bytes of a metadata file (index, entry point, signature), or null if absent. */
  read(relPath: string): Promise<Uint8Array | null>;
  /**
   * Size and SHA-256 of a package file, or null if absent. Implementations may vouch from
   * fingerprints (the engine verified the bytes) or hash in full (`verify --deep`).
   */
  packageInfo(relPath: string): Promise<PackageInfo | null>;
  /**
   * The same answer at once, for a reader that already holds it (the publisher's view of a
   * new generation): a checker walking 10,000 package references then makes no promise each.
   */
  packageInfoSync?(relPath: string): PackageInfo | null;
}

/** Signature checks against the exported public key (implemented outside src/layout). */
export interface SignatureVerifier {
  /** An apt InRelease: is the signature good, and what text does it sign? */
  verifyCleartext(text: string): Promise<{ ok: boolean; body: string | null; error?: string }>;
  /** A detached signature, armored or binary, over `data`. */
  verifyDetached(data: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

export interface CheckInput {
  reader: TreeReader;
  /**
   * The metadata paths of the generation (relative to the repo directory); the checker finds
   * the entry points among them, as a client configured for each would.
   */
  metadataPaths: readonly string[];
  /** null when the repo is published unsigned: no signature is required then. */
  verifier: SignatureVerifier | null;
  /**
   * Which repo this is (its name): a checker that remembers what it read between runs keeps
   * each repo's apart. Optional; without it, runs share one memory.
   */
  scope?: string;
}

export interface CheckResult {
  problems: CheckProblem[];
  /** Entry points read (dists, dnf repos, pacman dbs, simple indexes, manifests). */
  entryPoints: number;
  /** Package references checked. */
  packages: number;
}

export type RepoChecker = (input: CheckInput) => Promise<CheckResult>;
