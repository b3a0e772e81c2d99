import type { Readable } from "node:stream";
import type { DistroVersion, MirrorInfo, PackageFile, Repo } from "../types.js";

/** A streaming download of one package file from the master. */
export interface FileDownload {
  /** Content-Length when the master sent one. */
  size: number | null;
  body: Readable;
}

/**
 * Everything the agent asks of a packrat master (PACKRAT_API.md). Every method throws a
 * PackratError (PACKRAT_MASTER_*, PACKRAT_API_VERSION, PACKRAT_UNSAFE_FILENAME) on failure.
 */
export interface MasterClient {
  /** DESCRIBE /api/v2/ and refuse an api-version other than "2.0". */
  checkVersion(signal?: AbortSignal): Promise<void>;
  getMirror(signal?: AbortSignal): Promise<MirrorInfo>;
  getRepos(uris: readonly string[], signal?: AbortSignal): Promise<Repo[]>;
  getDistroVersions(signal?: AbortSignal): Promise<DistroVersion[]>;
  /**
   * The repo's package files: LIST PackageFile with Filter repo (paged), then chunked multi GET.
   * With packageNames, only those packages' files. URIs in `known` are not fetched again: a
   * package file's fields never change on the master (a change is a new PackageFile), and the
   * repo filter already applies the tags, so a full sync of an unchanged mirror is LISTs only.
   */
  listPackageFiles(
    repoUri: string,
    packageNames?: readonly string[] | null,
    signal?: AbortSignal,
    known?: ReadonlyMap<string, PackageFile>,
  ): Promise<PackageFile[]>;
  /** Long-poll; resolves with the package names that changed, [] on timeout. */
  poll(repoUri: string, timeoutSeconds: number, signal?: AbortSignal): Promise<string[]>;
  heartbeat(signal?: AbortSignal): Promise<void>;
  download(fileUrl: string, signal?: AbortSignal): Promise<FileDownload>;
  close(): Promise<void>;
}
