/**
 * The packrat data model as the agent sees it after reading the master.
 * Field names follow the master's (docs/master-api.md), in camelCase; URIs are kept as the master gives them.
 */

export type ManagerType = "apt" | "yum" | "json" | "docker" | "pypi" | "pacman";

export const MANAGER_TYPES: readonly ManagerType[] = [
  "apt",
  "yum",
  "json",
  "docker",
  "pypi",
  "pacman",
];

export interface MirrorInfo {
  name: string;
  description: string;
  repoUris: string[];
  lastHeartbeat: string | null;
}

export interface DistroVersion {
  uri: string;
  name: string;
  /** debian, rhel, sles, none, arch... */
  distro: string;
  /** e.g. "bookworm" or "9"; may be null on the master. */
  version: string | null;
  fileType: string;
  releaseNames: string;
}

export interface Repo {
  uri: string;
  name: string;
  description: string;
  /** Directory under root_dir; validated as a safe relative path before use. */
  filesystemDir: string;
  /** One of MANAGER_TYPES normally; kept as the master sent it so unknown types can be reported. */
  managerType: string;
  distroVersionUris: string[];
  /**
   * The name of the tag whose files the repo holds. The real master sends a Tag URI
   * (`/api/v2/Attrib/Tag:prod:`); the client keeps the name, which is what PackageFile.tags holds.
   */
  tag: string;
  /** Listed by the master, implemented nowhere on it (it lists every version): kept for status. */
  showOnlyLatest: boolean;
}

/** Architectures as packrat names them: x86_64, i386, arm64, all (others are passed through). */
export type PackratArch = string;

export interface PackageFile {
  uri: string;
  /** Package name (the last id of the Package URI). */
  packageName: string;
  distroVersionUri: string;
  version: string;
  type: string;
  arch: PackratArch;
  /** URL path on the master, e.g. /files/foo_1.0_all.deb */
  fileUrl: string;
  /** Basename of fileUrl: the on-disk filename; validated by assertSafeFilename. */
  filename: string;
  sha256: string;
  /** Tag names, sorted. The real master sends them joined with ", " (`"dev, prod"`, `""`). */
  tags: string[];
  /**
   * When the file was marked failed / deprecated on the master (ISO 8601 as it sent it), null if
   * not. Both change on the same PackageFile id, and the file stays in its repos' listings.
   */
  failedAt: string | null;
  deprecatedAt: string | null;
}
