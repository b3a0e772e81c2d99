#!/bin/bash
# Build packrat-agent-<version>-1.<arch>.rpm for RHEL-family hosts from the file tree that
# packaging/build-deb.sh staged (PACKRAT_DEB_STAGE_OUT): the same bundled Node runtime, agent
# and production node_modules as the .deb, so both packages come from one build.
#
# Usage: packaging/build-rpm.sh STAGE_DIR VERSION [OUTPUT_DIR]   (default OUTPUT_DIR: ./build)
#
#   PACKRAT_DEB_STAGE_OUT=/tmp/stage packaging/build-deb.sh build/
#   packaging/build-rpm.sh /tmp/stage "$(node -p 'require("./package.json").version')" build/
#
# Differences from the .deb: the unit goes to /usr/lib/systemd/system; the service user is made
# with useradd/groupadd in %pre; erasing the package keeps the user, the state and the
# published tree (rpm has no purge); mirror.conf is %config(noreplace). Requires are computed
# by rpmbuild from the bundled ELF files (libc, libstdc++, libgcc), so no nodejs.
#
# Environment:
#   PACKRAT_RPM_RELEASE   Release: (default 1).
#   PACKRAT_DEB_MAINTAINER  Packager: (the same default as the .deb's Maintainer:).
#   PACKRAT_RPM_PAYLOAD   payload compression (default w6.xzdio, which rpm on RHEL 7 and later
#                         reads; tests use w1.gzdio for speed).
set -euo pipefail

die() {
  echo "build-rpm.sh: $*" >&2
  exit 1
}

case "${1:-}" in
  -h | --help | "")
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    [ -n "${1:-}" ] && exit 0
    exit 2
    ;;
esac

command -v rpmbuild >/dev/null 2>&1 || die "rpmbuild not found (Debian: apt install rpm)"
stage="$(cd -- "$1" && pwd -P)"
version="${2:?usage: build-rpm.sh STAGE_DIR VERSION [OUTPUT_DIR]}"
out_arg="${3:-build}"
release="${PACKRAT_RPM_RELEASE:-1}"
payload="${PACKRAT_RPM_PAYLOAD:-w6.xzdio}"
packager="${PACKRAT_DEB_MAINTAINER:-packrat-agent maintainers <packrat-agent@packrat.invalid>}"

[ -x "$stage/usr/lib/packrat-agent/node" ] || die "$stage is not a tree staged by build-deb.sh (no usr/lib/packrat-agent/node)"
# rpm versions have no '-'; '~' sorts before the release as in Debian.
rpm_version="${version//-/_}"
[[ "$rpm_version" =~ ^[0-9][A-Za-z0-9.+~_]*$ ]] || die "version \"$version\" cannot be an rpm version"
case "$(uname -m)" in
  x86_64 | aarch64) arch="$(uname -m)" ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac

mkdir -p -- "$out_arg"
out="$(cd -- "$out_arg" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/packrat-rpm.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work"/{BUILD,RPMS,SPECS,tmp}

# The stage as rpm lays it out.
tree="$work/tree"
mkdir -p "$tree"
cp -a "$stage/." "$tree/"
mkdir -p "$tree/usr/lib/systemd/system"
mv "$tree/lib/systemd/system/packrat-agent.service" "$tree/usr/lib/systemd/system/"
rm -rf "$tree/lib"
rm -rf "$tree/usr/share/lintian"

cat >"$work/SPECS/packrat-agent.spec" <<EOF
Name:           packrat-agent
Version:        $rpm_version
Release:        $release
Summary:        Mirror agent for a packrat master
License:        Apache-2.0
Group:          System Environment/Daemons
Packager:       $packager
URL:            https://github.com/pnhowe/packrat
# Prebuilt: the bundled runtime is stripped already, and there are no sources to debug.
%global debug_package %{nil}
%global __strip /bin/true
%global _build_id_links none
%global _binary_payload $payload
# Scripts inside node_modules name python or perl in their #! lines, and the native addons
# link against Node's symbols: neither is a dependency of the installed agent.
%global __requires_exclude ^(/usr/bin/python.*|/usr/bin/perl|perl\\\\(.*\\\\)|python.*)\$
AutoReqProv:    yes
Requires(pre):  shadow-utils

%description
Keeps a package mirror in step with a packrat master and publishes signed
apt, yum/dnf, pacman, PyPI and JSON repositories, switching each repository
to its new metadata atomically. Carries its own Node.js runtime in
/usr/lib/packrat-agent.

%install
mkdir -p %{buildroot}
cp -a "$tree/." %{buildroot}/

%pre
getent group packrat >/dev/null || groupadd -r packrat
getent passwd packrat >/dev/null ||
  useradd -r -g packrat -d /var/lib/packratAgent -s /sbin/nologin -c "packrat-agent mirror" packrat
exit 0

%post
if [ ! -e /var/www/packrat ]; then
  mkdir -p /var/www/packrat && chown packrat:packrat /var/www/packrat
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
exit 0

%preun
if [ \$1 -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl stop packrat-agent.service >/dev/null 2>&1 || :
fi
exit 0

%postun
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
if [ \$1 -ge 1 ] && [ -d /run/systemd/system ]; then
  systemctl try-restart packrat-agent.service >/dev/null 2>&1 || :
fi
exit 0

%files
/usr/bin/packrat-agent
/usr/lib/packrat-agent
/usr/lib/systemd/system/packrat-agent.service
%dir %attr(0755,root,root) /etc/packrat
%config(noreplace) %attr(0640,root,packrat) /etc/packrat/mirror.conf
%dir %attr(0750,packrat,packrat) /var/lib/packratAgent
%doc /usr/share/doc/packrat-agent

%changelog
* $(LC_ALL=C date -u '+%a %b %d %Y') $packager - $rpm_version-$release
- Built from git commit $(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo unknown).
EOF

echo "build-rpm.sh: rpmbuild" >&2
if ! rpmbuild --quiet -bb \
  --define "_topdir $work" \
  --define "_tmppath $work/tmp" \
  --define "_rpmdir $out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --buildroot "$work/buildroot" \
  --target "$arch" \
  "$work/SPECS/packrat-agent.spec" >"$work/rpmbuild.log" 2>&1; then
  tail -n 40 "$work/rpmbuild.log" >&2
  die "rpmbuild failed"
fi
rpm="$out/packrat-agent-$rpm_version-$release.$arch.rpm"
[ -f "$rpm" ] || die "rpmbuild did not write $rpm"
echo "$rpm"
