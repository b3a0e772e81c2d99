#!/bin/bash
# Build an OCI image of packrat-agent, without a registry or a container engine daemon: a
# minimal Debian root filesystem from mmdebstrap, the .deb installed into it with apt, and
# buildah to turn that tree into an image (oci-archive), as root with the vfs driver and its
# storage in a throwaway directory (the machine's container storage and config are not used).
#
# Usage: packaging/build-image.sh DEB [OUTPUT_DIR]     (default OUTPUT_DIR: ./build)
#   → OUTPUT_DIR/packrat-agent_<version>_<arch>.oci.tar, image name packrat-agent:<version>
#
#   podman load -i build/packrat-agent_*.oci.tar
#   podman run -d -v /srv/packrat/etc:/etc/packrat:ro -v /srv/packrat/www:/var/www/packrat \
#     -v /srv/packrat/state:/var/lib/packratAgent localhost/packrat-agent:<version>
#
# The image runs `packrat-agent run --config /etc/packrat/mirror.conf` as the packrat user
# (uid and gid are in the image's labels); /etc/packrat (mirror.conf, the signing key),
# /var/www/packrat (root_dir) and /var/lib/packratAgent (state_db) are volumes.
#
# Environment:
#   PACKRAT_IMAGE_SUITE       Debian suite of the base (default bookworm).
#   PACKRAT_IMAGE_BASE_TAR    start from this root filesystem tarball (e.g. one made earlier by
#                             `mmdebstrap --variant=apt SUITE FILE.tar`) instead of running
#                             mmdebstrap; the tests pass their cached bootstrap.
#   PACKRAT_DEBIAN_MIRROR     default http://deb.debian.org/debian.
#   PACKRAT_IMAGE_COMPRESS=0  leave the layer uncompressed (quicker; the tests do).
set -euo pipefail

die() {
  echo "build-image.sh: $*" >&2
  exit 1
}

case "${1:-}" in
  -h | --help | "")
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    [ -n "${1:-}" ] && exit 0
    exit 2
    ;;
esac

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, chroot and buildah's vfs storage need it)"
for tool in buildah dpkg-deb tar unshare chroot; do
  command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` not found on PATH"
done
deb="$(readlink -f -- "$1")"
[ -f "$deb" ] || die "$1: no such .deb"
out_arg="${2:-build}"
suite="${PACKRAT_IMAGE_SUITE:-bookworm}"
mirror="${PACKRAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
version="$(dpkg-deb -f "$deb" Version)"
arch="$(dpkg-deb -f "$deb" Architecture)"
# OCI tags allow [A-Za-z0-9_.-]: '~' and '+' of Debian versions become '_'.
tag="$(printf '%s' "$version" | tr '~+:' '___')"

mkdir -p -- "$out_arg"
out="$(cd -- "$out_arg" && pwd)"
image_tar="$out/packrat-agent_${version}_${arch}.oci.tar"

work="$(mktemp -d "${TMPDIR:-/tmp}/packrat-image.XXXXXX")"
ctr=""
bh() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() {
  [ -n "$ctr" ] && bh rm "$ctr" >/dev/null 2>&1
  rm -rf -- "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"

# ---- 1. root filesystem: stock Debian + the .deb ----
if [ -n "${PACKRAT_IMAGE_BASE_TAR:-}" ]; then
  tar -C "$rootfs" -xf "$PACKRAT_IMAGE_BASE_TAR"
else
  command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not found (apt install mmdebstrap)"
  echo "build-image.sh: mmdebstrap $suite" >&2
  mmdebstrap --quiet --variant=apt --skip=cleanup/apt/lists "$suite" "$work/base.tar" "$mirror"
  tar -C "$rootfs" -xf "$work/base.tar"
  rm "$work/base.tar"
fi
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
cp "$deb" "$rootfs/tmp/packrat-agent.deb"
echo "build-image.sh: installing $(basename "$deb")" >&2
# apt in the tree, with /proc and /dev mounted in a private mount namespace only.
unshare --mount --fork --propagation private sh -c '
  R=$1
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c "apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 /tmp/packrat-agent.deb && apt-get clean"
' sh "$rootfs" >"$work/apt.log" 2>&1 || {
  tail -n 30 "$work/apt.log" >&2
  die "apt could not install $deb into the $suite tree"
}
rm -rf "$rootfs/tmp/packrat-agent.deb" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/log/apt/* "$rootfs"/var/log/dpkg.log
: >"$rootfs/etc/resolv.conf"
uid="$(awk -F: '$1 == "packrat" { print $3 }' "$rootfs/etc/passwd")"
gid="$(awk -F: '$1 == "packrat" { print $4 }' "$rootfs/etc/passwd")"
[ -n "$uid" ] && [ -n "$gid" ] || die "the .deb's postinst made no packrat user"

# ---- 2. the image ----
echo "build-image.sh: buildah" >&2
ctr="$(bh from --quiet scratch)"
mnt="$(bh mount "$ctr")"
tar -C "$rootfs" -cf - . | tar -C "$mnt" -xf -
bh umount "$ctr" >/dev/null
bh config \
  --entrypoint '["/usr/bin/packrat-agent", "run"]' \
  --cmd '["--config", "/etc/packrat/mirror.conf"]' \
  --user "$uid:$gid" \
  --workingdir /var/lib/packratAgent \
  --env LANG=C.UTF-8 \
  --volume /etc/packrat \
  --volume /var/www/packrat \
  --volume /var/lib/packratAgent \
  --stop-signal SIGTERM \
  --label org.opencontainers.image.title=packrat-agent \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.description="Mirror agent for a packrat master" \
  --label org.opencontainers.image.base.name="debian:$suite" \
  --label io.packrat.agent.uid="$uid" \
  --label io.packrat.agent.gid="$gid" \
  "$ctr"
rm -f -- "$image_tar"
compress=()
[ "${PACKRAT_IMAGE_COMPRESS:-1}" = 1 ] && compress=(--disable-compression=false)
bh commit --quiet --format oci "${compress[@]}" "$ctr" "oci-archive:$image_tar:packrat-agent:$tag" >/dev/null
echo "$image_tar"
