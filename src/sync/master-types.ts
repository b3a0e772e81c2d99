import type { Readable } from "node:stream";
import type { DistroVersion, MirrorInfo, PackageFile, Repo } from "../types.js";

/** A streaming download of one package file from the master. */
export interface FileDownload {
  /** Content-Length when the master sent one (the real master's /files/ answers are chunked). */
  size: number | null;
  body: Readable;
}

/** A package file the master listed and the client left out, and why. */
export interface SkippedPackageFile {
  uri: string;
  /** The object's `file` field when it had a string one, else "". */
  fileUrl: string;
  /**
   * PACKRAT_UNSAFE_FILENAME (a name unsafe to use), PACKRAT_MASTER_PROTOCOL (a malformed
   * object), or PACKRAT_PACKAGE_INVALID (a source directory's file that is not a package).
   */
  code: "PACKRAT_UNSAFE_FILENAME" | "PACKRAT_MASTER_PROTOCOL" | "PACKRAT_PACKAGE_INVALID";
  reason: string;
}

/** What the master says a repo holds: the files that parsed, and the ones left out. */
export interface PackageFileListing {
  files: PackageFile[];
  skipped: SkippedPackageFile[];
}

/**
 * Everything the agent asks of a packrat master (docs/master-api.md). Every method throws a
 * PackratError (PACKRAT_MASTER_*, PACKRAT_API_VERSION) on failure.
 */
export interface MasterClient {
  /** DESCRIBE /api/v2/ and refuse an api-version other than "2.0". */
  checkVersion(signal?: AbortSignal): Promise<void>;
  getMirror(signal?: AbortSignal): Promise<MirrorInfo>;
  getRepos(uris: readonly string[], signal?: AbortSignal): Promise<Repo[]>;
  getDistroVersions(signal?: AbortSignal): Promise<DistroVersion[]>;
  /**
   * The repo's package files: one LIST of PackageFile with Filter repo (the whole set at once,
   * so an unordered master cannot make pages skip a file), then multi-object GETs of all of
   * them: a file changes in place on the master (failed, deprecated, tags). With packageNames,
   * only those packages' files. One malformed object or unsafe name skips that file only.
   */
  listPackageFiles(
    repoUri: string,
    packageNames?: readonly string[] | null,
    signal?: AbortSignal,
  ): Promise<PackageFileListing>;
  /** Long-poll; resolves with the package names that changed, [] on timeout. */
  poll(repoUri: string, timeoutSeconds: number, signal?: AbortSignal): Promise<string[]>;
  heartbeat(signal?: AbortSignal): Promise<void>;
  download(fileUrl: string, signal?: AbortSignal): Promise<FileDownload>;
  close(): Promise<void>;
}
