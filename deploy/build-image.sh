#!/usr/bin/env bash
# Builds Switchyard's container image from the Dockerfile with podman,
# offline: no base image is pulled. The Dockerfile's build stage is replaced
# by a directory holding a locally built release binary, and its runtime
# base (gcr.io/distroless/cc-debian12:nonroot) by a local stand-in assembled
# from the Debian packages distroless builds that image from. Safe to run
# again: unchanged inputs reuse the images already built. Run with --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/build-image.sh [options]

Build the image with podman without pulling anything:
  1. the release binary: `cargo build --release --locked -p switchyard`
     (or --binary PATH);
  2. the runtime base, once per set of package versions: a stand-in for
     gcr.io/distroless/cc-debian12:nonroot from the Debian packages
     distroless lists (apt-get download + dpkg-deb -x), with its passwd and
     group (nonroot = 65532), /tmp 1777 and /home/nonroot;
  3. the Dockerfile, `--pull=never`, with `--build-context build=DIR`
     replacing its build stage by the binary and `--build-arg RUNTIME_IMAGE`
     its runtime base by the stand-in.

Options:
  -t, --tag NAME      the image to build (default: switchyard:VERSION, the
                      workspace version from Cargo.toml)
  --binary PATH       use this switchyard binary instead of building one
                      (a glibc binary for this machine's architecture)
  --base-tag NAME     the stand-in base image
                      (default: localhost/switchyard-base:cc-debian12-nonroot)
  -h, --help          this text

Environment:
  CARGO               the cargo binary (default: cargo)
  CARGO_TARGET_DIR    cargo's target directory (default: target); the
                      downloaded packages and build inputs go to its image/

Needs: podman, apt-get with package lists for Debian 12 (bookworm), dpkg-deb,
tar, sha256sum. Prints the image's name, ID and size on stdout.

Exit status: 0 built (or already up to date); 1 a step failed; 2 usage
errors or a missing tool.
EOF
}

die() {
  echo "build-image: $*" >&2
  exit 1
}

usage_error() {
  echo "build-image: $*" >&2
  exit 2
}

log() { echo "build-image: $*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
[ -n "$version" ] || die "no [workspace.package] version in $repo/Cargo.toml"
tag="switchyard:$version"
binary=
base_tag=localhost/switchyard-base:cc-debian12-nonroot

while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    -t | --tag | --binary | --base-tag)
      [ "$#" -ge 2 ] || usage_error "$1 needs a value (see --help)"
      case "$1" in
        -t | --tag) tag=$2 ;;
        --binary) binary=$2 ;;
        --base-tag) base_tag=$2 ;;
      esac
      shift 2
      ;;
    --tag=* | --binary=* | --base-tag=*)
      value=${1#*=}
      case "$1" in
        --tag=*) tag=$value ;;
        --binary=*) binary=$value ;;
        --base-tag=*) base_tag=$value ;;
      esac
      shift
      ;;
    *) usage_error "unknown argument: $1 (see --help)" ;;
  esac
done

for tool in podman apt-get apt-cache dpkg dpkg-deb tar sha256sum; do
  have "$tool" || usage_error "$tool is not installed (scripts/bootstrap.sh installs podman; the rest come with Debian)"
done

# The runtime base as distroless builds gcr.io/distroless/cc-debian12 (its
# static, base and cc layers), package by package.
packages=(
  base-files netbase tzdata media-types    # static
  libc6 libssl3                            # base
  libgomp1 libstdc++6 libgcc-s1 gcc-12-base # cc
)
# Only their data is used: ca-certificates for the bundle distroless
# generates, libc-bin for the C.utf8 locale.
data_packages=(ca-certificates libc-bin)

target_dir=${CARGO_TARGET_DIR:-$repo/target}
case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
work=$target_dir/image
mkdir -p "$work/debs"

# One build at a time per work directory.
if have flock; then
  exec 9>"$work/.lock"
  flock 9
fi

# --- 1. the binary -----------------------------------------------------------

if [ -z "$binary" ]; then
  have "${CARGO:-cargo}" || usage_error "${CARGO:-cargo} is not installed: install Rust, or pass --binary PATH"
  log "building the release binary (cargo build --release --locked -p switchyard)"
  (cd "$repo" && "${CARGO:-cargo}" build --release --locked -p switchyard) ||
    die "cargo build failed"
  binary=$target_dir/release/switchyard
fi
[ -f "$binary" ] || die "no binary at $binary"
[ -x "$binary" ] || die "$binary is not executable"
[ "$(od -An -c -N4 "$binary" | tr -d ' ')" = '177ELF' ] || die "$binary is not an ELF executable"

# --- 2. the runtime base -----------------------------------------------------

arch=$(dpkg --print-architecture)
# NAME=VERSION of each package's candidate (one apt-cache call: each costs
# about half a second).
candidates=$(apt-cache show --no-all-versions "${packages[@]}" "${data_packages[@]}" 2>/dev/null |
  awk '/^Package: /{p=$2} /^Version: /{print p "=" $2}') || true
pinned=()
for p in "${packages[@]}" "${data_packages[@]}"; do
  pv=$(grep -m 1 "^$p=" <<<"$candidates" || true)
  [ -n "$pv" ] || die "apt knows no version of $p: run apt-get update (the Debian 12 package lists are needed)"
  pinned+=("$pv")
done

# The base is rebuilt when a package version, this script or a file under
# deploy/image/ changes; the key is stored as a label on the image.
base_key=$(
  {
    printf '%s\n' "$arch" "${pinned[@]}"
    sha256sum <"$0"
    (cd "$repo/deploy/image" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d' ' -f1
)
key_label=io.switchyard.base-key
current_key=
if podman image exists "$base_tag"; then
  current_key=$(podman image inspect --format "{{ index .Labels \"$key_label\" }}" "$base_tag")
fi

if [ "$current_key" = "$base_key" ]; then
  log "runtime base $base_tag is up to date"
else
  # apt-get download names a file NAME_VERSION_ARCH.deb, with the epoch's
  # ':' as %3a. Present files are reused.
  deb_file() { # deb_file NAME=VERSION
    local name=${1%%=*} ver=${1#*=}
    local f
    for f in "$work/debs/${name}_${ver//:/%3a}_"*.deb; do
      [ -f "$f" ] && echo "$f" && return 0
    done
    return 1
  }
  missing=()
  for pv in "${pinned[@]}"; do
    deb_file "$pv" >/dev/null || missing+=("$pv")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "downloading ${missing[*]}"
    (cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root "${missing[@]}") ||
      die "apt-get download failed (is a Debian mirror reachable? run apt-get update)"
  fi

  log "assembling the runtime base from ${#pinned[@]} packages"
  rm -rf "$work/base"
  rootfs=$work/base/rootfs
  extra=$work/base/data
  mkdir -p "$rootfs" "$extra"
  unpack() { # unpack NAME=VERSION DIR
    local f
    f=$(deb_file "$1") || die "no downloaded package for $1 in $work/debs"
    mkdir -p "$2"
    if ! dpkg-deb -x "$f" "$2"; then
      rm -f "$f"
      die "cannot unpack $f (removed; run again to download it anew)"
    fi
  }
  for pv in "${pinned[@]}"; do
    case " ${data_packages[*]} " in
      *" ${pv%%=*} "*) unpack "$pv" "$extra/${pv%%=*}" ;;
      *) unpack "$pv" "$rootfs" ;;
    esac
  done

  # Merged /usr, as Debian 12 and distroless lay it out: /bin, /sbin, /lib
  # and /lib64 are symlinks into /usr.
  for d in bin sbin lib lib64; do
    if [ -d "$rootfs/$d" ] && [ ! -L "$rootfs/$d" ]; then
      mkdir -p "$rootfs/usr/$d"
      cp -a "$rootfs/$d/." "$rootfs/usr/$d/"
      rm -rf "${rootfs:?}/$d"
    fi
    [ -e "$rootfs/$d" ] || ln -s "usr/$d" "$rootfs/$d"
  done

  # The CA bundle (update-ca-certificates' output: every certificate the
  # package ships, concatenated) and the C.utf8 locale.
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/share/doc/ca-certificates" "$rootfs/usr/lib/locale"
  find "$extra/ca-certificates/usr/share/ca-certificates" -name '*.crt' -type f -print0 |
    sort -z | xargs -0 cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  grep -q 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt" ||
    die "no certificates in the ca-certificates package"
  cp "$extra/ca-certificates/usr/share/doc/ca-certificates/copyright" "$rootfs/usr/share/doc/ca-certificates/"
  [ -d "$extra/libc-bin/usr/lib/locale/C.utf8" ] || die "no C.utf8 locale in libc-bin"
  cp -a "$extra/libc-bin/usr/lib/locale/C.utf8" "$rootfs/usr/lib/locale/"

  # passwd, group, nsswitch.conf; /tmp, /root and the homes as distroless
  # creates them.
  cp -a "$repo/deploy/image/rootfs/." "$rootfs/"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
  mkdir -p "$rootfs/tmp" "$rootfs/root" "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root" "$rootfs/home/nonroot"
  chmod 0755 "$rootfs/home"

  # One layer; every file root's, but /home/nonroot (65532, like the
  # user). Fixed order and times, so equal inputs give an equal layer.
  tar_opts=(--sort=name --mtime=@0 --numeric-owner --format=gnu -C "$rootfs")
  tar "${tar_opts[@]}" --owner=0 --group=0 --exclude=./home/nonroot -cf "$work/base/rootfs.tar" .
  tar "${tar_opts[@]}" --owner=65532 --group=65532 -rf "$work/base/rootfs.tar" ./home/nonroot

  old_base=$(podman image inspect --format '{{.Id}}' "$base_tag" 2>/dev/null || true)
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change "LABEL $key_label=$base_key" \
    --change 'LABEL io.switchyard.base=gcr.io/distroless/cc-debian12:nonroot-stand-in' \
    --message "stand-in for gcr.io/distroless/cc-debian12:nonroot: ${pinned[*]}" \
    "$work/base/rootfs.tar" "$base_tag" >/dev/null ||
    die "podman import of the runtime base failed"
  # The base it replaces, if nothing else names or uses it.
  if [ -n "$old_base" ]; then
    podman rmi "$old_base" >/dev/null 2>&1 || true
  fi
  rm -rf "$work/base"
  log "runtime base $base_tag built"
fi

# --- 3. the image ------------------------------------------------------------

# The build stage is replaced by a build context of the same name, a
# directory holding /out/switchyard, where that stage leaves the binary; no
# step of it runs and its base is never looked up. The runtime base is
# replaced through its build argument: podman 4.3's buildah matches a build
# context against FROM's text before expanding build arguments, so one
# cannot replace `FROM ${RUNTIME_IMAGE}`. The main context is an empty
# directory: only the build stage reads it.
rm -rf "$work/stage" "$work/context"
install -D -m 0755 "$binary" "$work/stage/out/switchyard"
mkdir -p "$work/context"

old_image=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
log "building $tag"
podman build --quiet --pull=never \
  --file "$repo/Dockerfile" \
  --build-context "build=$work/stage" \
  --build-arg "RUNTIME_IMAGE=$base_tag" \
  --tag "$tag" \
  "$work/context" >/dev/null ||
  die "podman build failed"
new_image=$(podman image inspect --format '{{.Id}}' "$tag") || die "podman build left no image $tag"
# The image the tag named before, if the tag moved and nothing else uses it.
if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then
  podman rmi "$old_image" >/dev/null 2>&1 || true
fi
rm -rf "$work/stage" "$work/context"

size=$(podman image inspect --format '{{.Size}}' "$tag")
printf '%s %s %s bytes\n' "$tag" "${new_image:0:12}" "$size"
