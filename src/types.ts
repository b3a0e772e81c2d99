/**
 * The packrat data model as the agent sees it after reading the master.
 * Field names follow PACKRAT_API.md, in camelCase; URIs are kept as the master gives them.
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
  tag: string;
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
  tags: string[];
}
