#!/bin/bash
# Build packrat-agent_<version>_<arch>.deb from this repository.
#
# Usage: packaging/build-deb.sh [OUTPUT_DIR]        (default OUTPUT_DIR: ./build)
#
# The repo is copied to a throwaway directory (mktemp -d); `npm ci`, `npm run build` and
# `npm prune --omit=dev` run there, so the working tree (and its node_modules) is never
# touched: only OUTPUT_DIR is written. The package is architecture-specific because
# node_modules holds native addons (better-sqlite3, zstd-napi, lzma-native).
#
# The package carries its own runtime: the `node` binary that builds it (the one on PATH, or
# PACKRAT_NODE) is copied, stripped, to /usr/lib/packrat-agent/node, and the agent's #! line
# names it. The native addons are compiled by (or, with
# PACKRAT_DEB_REUSE_NODE_MODULES, were compiled for) that same Node, and the build loads them
# with the bundled binary before packing, so a mismatch fails here, not on the server. The
# package then needs only libc6, libstdc++6 and libgcc (plus adduser for the service user).
#
# Environment:
#   PACKRAT_NODE             the Node (>= 20) to bundle (default: `node` on PATH). It must be
#                            the Node whose ABI the native addons are built for.
#   PACKRAT_DEB_DEPENDS      Depends: line (default: computed from the bundled binaries:
#                            "libc6 (>= <newest GLIBC_ symbol>), libstdc++6 (>= 5.2),
#                            libgcc-s1 | libgcc1, adduser, ca-certificates"; nodesource's
#                            Node reads /etc/ssl/certs/ca-certificates.crt at start).
#   PACKRAT_DEB_STAGE_OUT=DIR
#                            also leave the staged file tree (what the .deb installs, without
#                            DEBIAN/) in DIR, for packaging/build-rpm.sh.
#   PACKRAT_DEB_VERSION      Debian version (default: "version" from package.json).
#   PACKRAT_DEB_MAINTAINER   Maintainer: field (default "packrat-agent maintainers <packrat-agent@packrat.invalid>").
#   PACKRAT_DEB_COMPRESSION  dpkg-deb -Z value: xz (default), gzip, none.
#   PACKRAT_DEB_REUSE_NODE_MODULES=1
#                            copy the production packages of the repo's node_modules instead of
#                            running `npm ci` (saves compiling the native addons again; `npm ls`
#                            must find the copy complete for package-lock.json). For tests and
#                            quick local builds; release builds use the default clean `npm ci`.
#   PACKRAT_DEB_KEEP_WORK=1  keep the work directory for debugging (its path is printed).
set -euo pipefail

die() {
  echo "build-deb.sh: $*" >&2
  exit 1
}

case "${1:-}" in
  -h | --help)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
    ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
out_arg="${1:-build}"
maintainer="${PACKRAT_DEB_MAINTAINER:-packrat-agent maintainers <packrat-agent@packrat.invalid>}"
compression="${PACKRAT_DEB_COMPRESSION:-xz}"

for tool in node npm dpkg dpkg-deb gzip tar md5sum strip objdump; do
  command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` not found on PATH; it is needed to build the .deb"
done
node_bin="$(readlink -f -- "${PACKRAT_NODE:-$(command -v node)}")"
[ -x "$node_bin" ] || die "PACKRAT_NODE=$node_bin is not an executable"
node_major="$("$node_bin" -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "$node_bin is Node $("$node_bin" --version): packrat-agent needs Node >= 20"
# A Node linked against shared libraries of its distribution (Debian's own nodejs links
# libnode, libuv, libssl, libicu...) would not run where those are missing: only a
# self-contained build (nodejs.org, nodesource) can be bundled.
foreign_libs="$(objdump -p "$node_bin" | awk '$1 == "NEEDED" { print $2 }' |
  grep -Ev '^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux[-a-z0-9_]*)\.so\.[0-9.]+$' || true)"
[ -z "$foreign_libs" ] ||
  die "$node_bin links $(echo "$foreign_libs" | tr '\n' ' ')which the package cannot carry: use a self-contained Node (nodejs.org or nodesource builds) as PACKRAT_NODE"
# npm compiles the native addons with the `node` on PATH: it must be the one bundled.
path_node_abi="$(node -p process.versions.modules)"
bundled_node_abi="$("$node_bin" -p process.versions.modules)"
[ "$path_node_abi" = "$bundled_node_abi" ] ||
  die "PACKRAT_NODE ($node_bin) has module ABI $bundled_node_abi but \`node\` on PATH has $path_node_abi: the native addons would not load"

example_conf="$repo/etc/mirror.conf.example"
[ -f "$example_conf" ] ||
  die "$example_conf does not exist: it becomes /etc/packrat/mirror.conf (a conffile) in the package"
for f in packaging/packrat-agent.service etc/nginx/packrat-mirror.conf etc/apache2/packrat-mirror.conf \
  etc/nginx/packrat-docker.conf etc/apache2/packrat-docker.conf docs/operations.md package.json package-lock.json; do
  [ -f "$repo/$f" ] || die "$repo/$f does not exist; it goes into the package"
done

version="${PACKRAT_DEB_VERSION:-$(node -p 'require(process.argv[1]).version' "$repo/package.json")}"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "version \"$version\" is not a valid Debian version"
arch="$(dpkg --print-architecture)"

mkdir -p -- "$out_arg"
out="$(cd -- "$out_arg" && pwd)"
deb="$out/packrat-agent_${version}_${arch}.deb"

umask 022
work="$(mktemp -d "${TMPDIR:-/tmp}/packrat-deb.XXXXXX")"
if [ "${PACKRAT_DEB_KEEP_WORK:-}" = 1 ]; then
  echo "build-deb.sh: work directory kept: $work" >&2
else
  trap 'rm -rf -- "$work"' EXIT
fi
build="$work/build"
root="$work/root"
mkdir -p "$build" "$root"

# Run a step quietly; on failure show the end of its output.
step() {
  local name="$1"
  shift
  local started=$SECONDS
  echo "build-deb.sh: $name" >&2
  if ! "$@" >"$work/$name.log" 2>&1; then
    tail -n 40 "$work/$name.log" >&2
    die "$name failed (command: $*)"
  fi
  echo "build-deb.sh: $name done in $((SECONDS - started)) s" >&2
}

# ---- 1. build in a copy of the repo ----
tar -C "$repo" --exclude=test/fixtures/generated -cf - \
  package.json package-lock.json tsconfig.json tsconfig.build.json bin src test |
  tar -C "$build" -xf -
if [ "${PACKRAT_DEB_REUSE_NODE_MODULES:-}" = 1 ]; then
  [ -d "$repo/node_modules" ] || die "PACKRAT_DEB_REUSE_NODE_MODULES=1 but $repo/node_modules does not exist"
  # tsc only reads node_modules: build against the repo's through a symlink...
  ln -s "$repo/node_modules" "$build/node_modules"
  (cd "$build" && step npm-build npm run build)
  rm "$build/node_modules"
  # ...then copy just the production packages (`npm ls` only reads) and check the copy is a
  # complete tree for package-lock.json.
  echo "build-deb.sh: copying the production packages of $repo/node_modules" >&2
  if ! (cd "$repo" && npm ls --omit=dev --all --parseable >"$work/npm-ls-repo.txt" 2>"$work/npm-ls-repo.log"); then
    tail -n 20 "$work/npm-ls-repo.log" >&2
    die "$repo/node_modules does not match package-lock.json; run \`npm ci\` there or build without PACKRAT_DEB_REUSE_NODE_MODULES"
  fi
  sed -n "s|^$repo/node_modules/|node_modules/|p" "$work/npm-ls-repo.txt" | sort -u >"$work/production-packages"
  [ -s "$work/production-packages" ] || die "npm ls found no production packages in $repo/node_modules"
  tar -C "$repo" -cf - -T "$work/production-packages" | tar -C "$build" -xf -
  (cd "$build" && step npm-ls npm ls --omit=dev --all)
else
  (cd "$build" && step npm-ci npm ci --no-audit --no-fund)
  (cd "$build" && step npm-build npm run build)
  (cd "$build" && step npm-prune npm prune --omit=dev --no-audit --no-fund)
fi
[ -f "$build/dist/src/agent/main.js" ] || die "npm run build did not produce dist/src/agent/main.js"

# ---- 2. staging tree ----
lib="$root/usr/lib/packrat-agent"
mkdir -p "$lib/dist" "$root/usr/bin"
# The runtime. Stripping drops the debug symbols (about 12 MB of nodesource's 98 MB binary).
install -m 0755 "$node_bin" "$lib/node"
strip --strip-unneeded "$lib/node"
cp -a "$build/bin" "$build/package.json" "$lib/"
# `packrat-agent --version` reads package.json: make it say the package's version.
"$node_bin" -e '
  const fs = require("node:fs");
  const [file, version] = process.argv.slice(1);
  const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
  pkg.version = version;
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
' "$lib/package.json" "$version"
cp -a "$build/dist/src" "$lib/dist/src"
find "$lib/dist" -name '*.map' -delete
cp -a "$build/node_modules" "$lib/node_modules"
# Native addons leave their object files and the sources they were compiled from.
find "$lib/node_modules" -depth -type d \( -name obj.target -o -name obj -o -name .deps \) \
  -path '*/build/*' -exec rm -rf {} +
# ...and, for the packages built with node-gyp (a binding.gyp beside package.json), the C/C++
# sources they were built from (deps/, src/: 14 MB), the static libraries linked into the
# addon, and better-sqlite3's test extension.
for gyp in "$lib"/node_modules/*/binding.gyp "$lib"/node_modules/@*/*/binding.gyp; do
  [ -f "$gyp" ] || continue
  rm -rf -- "$(dirname "$gyp")/deps" "$(dirname "$gyp")/src"
done
find "$lib/node_modules" -path '*/build/Release/*' \( -name '*.a' -o -name 'test_extension.node' \) -delete
# Prebuilt binaries for other platforms (the bare-* modules ship Android/arm ones for the Bare
# runtime, which Node never loads), dotfiles meant for the package's own development, and
# debug symbols: none of it runs here, and lintian rightly flags all of it.
case "$arch" in amd64) keep_prebuild=linux-x64 ;; arm64) keep_prebuild=linux-arm64 ;; *) keep_prebuild=none ;; esac
find "$lib/node_modules" -mindepth 3 -maxdepth 4 -type d -path '*/prebuilds/*' \
  ! -name "$keep_prebuild" -prune -exec rm -rf {} +
find "$lib/node_modules" -type f \( -name .npmignore -o -name '.eslintrc*' -o -name eslint.config.js \) -delete
find "$lib/node_modules" -type f \( -name '*.node' -o -name '*.bare' \) -exec chmod 0644 {} + \
  -exec strip --strip-unneeded {} + 2>/dev/null || true
# Nothing in node_modules is run as a program (the agent only require()s and imports it): no
# executable bits, so the command-line scripts of the dependencies (#!/usr/bin/env node) are
# inert, not programs that would need a system nodejs.
find "$lib/node_modules" -type f -perm /111 -exec chmod a-x {} +
# bin/packrat-agent's `#!/usr/bin/env node` would find the system's Node (or none): in the
# package it names the bundled runtime, so the /usr/bin symlink runs that whatever PATH says.
sed -i '1s|^#!.*$|#!/usr/lib/packrat-agent/node|' "$lib/bin/packrat-agent"
ln -s ../lib/packrat-agent/bin/packrat-agent "$root/usr/bin/packrat-agent"

# The bundled Node must load every native addon (an ABI mismatch fails the build, not the
# server), and the agent must start with it.
echo "build-deb.sh: loading the native addons with the bundled node" >&2
(cd "$lib" && ./node -e '
  const D = require("better-sqlite3");
  if (new D(":memory:").prepare("select 1 + 1 as two").get().two !== 2) throw new Error("sqlite");
  const z = require("zstd-napi");
  const lzma = require("lzma-native");
  const data = Buffer.from("packrat");
  if (z.decompress(z.compress(data)).toString() !== "packrat") throw new Error("zstd");
  if (typeof lzma.createCompressor !== "function") throw new Error("xz");
') || die "the bundled node ($node_bin) cannot load the native addons in node_modules: rebuild them with it (npm ci, or npm rebuild)"
"$lib/node" "$lib/bin/packrat-agent" --version >/dev/null ||
  die "the staged agent does not start with the bundled node"

# Depends: the newest glibc symbol version any bundled binary needs (the official Node 20
# builds need 2.28: Debian 10, Ubuntu 18.10 and later), libstdc++ and libgcc for Node itself.
glibc_min="$({
  objdump -T "$lib/node"
  find "$lib/node_modules" -type f -name '*.node' -exec objdump -T {} +
} 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
[ -n "$glibc_min" ] || die "could not read the glibc symbol versions of the bundled node"
depends="${PACKRAT_DEB_DEPENDS:-libc6 (>= $glibc_min), libstdc++6 (>= 5.2), libgcc-s1 | libgcc1, adduser, ca-certificates}"

install -D -m 0640 "$example_conf" "$root/etc/packrat/mirror.conf"
install -D -m 0644 "$repo/packaging/packrat-agent.service" \
  "$root/lib/systemd/system/packrat-agent.service"
install -d -m 0750 "$root/var/lib/packratAgent"

doc="$root/usr/share/doc/packrat-agent"
install -D -m 0644 "$repo/docs/operations.md" "$doc/operations.md"
install -D -m 0644 "$repo/packaging/debian/lintian-overrides" \
  "$root/usr/share/lintian/overrides/packrat-agent"
install -D -m 0644 "$repo/etc/nginx/packrat-mirror.conf" "$doc/examples/nginx/packrat-mirror.conf"
install -D -m 0644 "$repo/etc/apache2/packrat-mirror.conf" "$doc/examples/apache2/packrat-mirror.conf"
install -D -m 0644 "$repo/etc/nginx/packrat-docker.conf" "$doc/examples/nginx/packrat-docker.conf"
install -D -m 0644 "$repo/etc/apache2/packrat-docker.conf" "$doc/examples/apache2/packrat-docker.conf"
install -D -m 0644 "$example_conf" "$doc/examples/mirror.conf.example"
sed -e "s/@YEAR@/$(date -u +%Y)/" "$repo/packaging/copyright" >"$doc/copyright"
chmod 0644 "$doc/copyright"
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
  echo "packrat-agent ($version) unstable; urgency=medium"
  echo
  echo "  * Built from git commit $commit."
  echo
  echo " -- $maintainer  $(date -u -R)"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Everything readable by all, writable by the owner only (npm can leave odd modes).
chmod -R u+rwX,go+rX,go-w "$root/usr"

if [ -n "${PACKRAT_DEB_STAGE_OUT:-}" ]; then
  rm -rf -- "$PACKRAT_DEB_STAGE_OUT"
  mkdir -p -- "$PACKRAT_DEB_STAGE_OUT"
  cp -a "$root/." "$PACKRAT_DEB_STAGE_OUT/"
fi

# ---- 3. DEBIAN/ ----
mkdir -p "$root/DEBIAN"
installed_size="$(du -sk --apparent-size "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<EOF
Package: packrat-agent
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Section: admin
Priority: optional
Description: mirror agent for a packrat master
 Keeps a package mirror in step with a packrat master and publishes signed
 apt, yum/dnf, pacman, PyPI and JSON repositories, switching each repository
 to its new metadata atomically so clients never see a half-written index.
 .
 Runs as the packrat-agent systemd service; configure /etc/packrat/mirror.conf.
EOF
echo /etc/packrat/mirror.conf >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$repo/packaging/debian/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# ---- 4. the .deb ----
step dpkg-deb dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb"
echo "$deb"
