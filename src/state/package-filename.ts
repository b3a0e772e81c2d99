/**
 * Best-effort package name and version from a package file's basename, for rows imported
 * from the original agent, which stored neither. The next full sync replaces them with the
 * master's values; until then they only need to be stable and close (apt's pool directory,
 * for instance, uses the first characters of the name).
 */
export interface FilenameParts {
  packageName: string;
  /** "" when the filename does not say. */
  version: string;
}

const PACMAN_SUFFIX = /\.pkg\.tar(\.[a-z0-9]+)?$/;
const SDIST_SUFFIX = /\.(tar\.gz|tar\.bz2|tar\.xz|tgz|zip)$/;

export function partsFromFilename(filename: string): FilenameParts {
  if (filename.endsWith(".deb") || filename.endsWith(".udeb")) {
    // Debian policy: name_version_arch.deb; the version has no "_".
    const [name, version] = filename.split("_");
    if (name && version !== undefined) return { packageName: name, version };
  }
  if (filename.endsWith(".rpm")) {
    // name-version-release.arch.rpm; the name may itself hold "-".
    const stem = filename.slice(0, -".rpm".length);
    const noArch = stem.includes(".") ? stem.slice(0, stem.lastIndexOf(".")) : stem;
    const parts = noArch.split("-");
    if (parts.length >= 3) {
      return { packageName: parts.slice(0, -2).join("-"), version: parts.slice(-2).join("-") };
    }
  }
  if (PACMAN_SUFFIX.test(filename)) {
    // name-pkgver-pkgrel-arch.pkg.tar.zst
    const parts = filename.replace(PACMAN_SUFFIX, "").split("-");
    if (parts.length >= 4) {
      return { packageName: parts.slice(0, -3).join("-"), version: parts.slice(-3, -1).join("-") };
    }
  }
  if (filename.endsWith(".whl")) {
    // PEP 427: name-version(-build)?-python-abi-platform.whl; "-" never inside a part.
    const [name, version] = filename.split("-");
    if (name && version !== undefined) return { packageName: name, version };
  }
  if (SDIST_SUFFIX.test(filename)) {
    const stem = filename.replace(SDIST_SUFFIX, "");
    const dash = stem.lastIndexOf("-");
    if (dash > 0) return { packageName: stem.slice(0, dash), version: stem.slice(dash + 1) };
  }
  // Anything else (json, docker...): packrat's convention name_version.ext, else the stem.
  const dot = filename.lastIndexOf(".");
  const stem = dot > 0 ? filename.slice(0, dot) : filename;
  const underscore = stem.indexOf("_");
  if (underscore > 0) {
    return { packageName: stem.slice(0, underscore), version: stem.slice(underscore + 1) };
  }
  return { packageName: stem, version: "" };
}
