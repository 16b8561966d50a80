#!/usr/bin/env bash
# Builds the images of Dockerfile.runtime and Dockerfile.operator for real, without Docker or a
# registry: buildah (storage under the per-user cache, vfs driver, `--isolation chroot`) on a
# Python base bootstrapped from Debian packages, since python:3.11-slim-bookworm cannot be pulled
# here. Also builds the pause image a node's containerd needs, from the pinned Kubernetes module.
#
#   base      debootstrap --variant=minbase bookworm + python3 (Debian's 3.11.2; the Dockerfiles'
#             pinned default is python:3.11-slim-bookworm, CPython 3.11.16 in /usr/local)
#   runtime   buildah bud Dockerfile.runtime  --build-arg PYTHON_IMAGE=<base>
#   operator  buildah bud Dockerfile.operator --build-arg PYTHON_IMAGE=<base>
#   retrain   buildah bud Dockerfile.runtime --target retrain (the runtime plus git: CI's job)
#   pause     FROM scratch + pause.c of k8s.io/kubernetes (gcc -Os -static, as build/pause/Makefile)
#
# Each result is keyed by what determines it (the base: its recipe and the apt mirror; an image:
# its Dockerfile, the files it copies, the base) and reused when present. Each image is exported
# as an OCI archive for `ctr -n k8s.io images import <archive>`; a fresh build is smoke-tested
# chrooted first (entry points, USER, /readyz of the example model). RUN steps see the host's
# network and CA bundle (bind-mounted, never baked in); nothing is created on the host's network.
#
# Needs root and the Debian packages buildah debootstrap runc uidmap fuse-overlayfs, plus gcc and
# Go (for the pause module). Progress goes to stderr; stdout ends with
#   base=<ref>  pause=<ref>  pause_archive=<file>  runtime_archive=<file>  operator_archive=<file>
#   retrain_archive=<file>  retrain=<ref>
#   runtime=<ref>
#   operator=<ref>
#
# `hack/images.sh pause` builds only the pause image (what a node needs to start) and prints
# its two lines. `hack/images.sh run-job <ref> <dir>` runs a CI job's script in a built image
# as GitLab's docker executor would (as root): <dir> is mounted at /job, the script is
# /job/job.sh (bash -eo pipefail), its variables are the KEY=VALUE lines of /job/job.env, and it
# starts in /job/work.
set -euo pipefail
only_pause=false job_ref="" job_dir=""
case "${1:-}" in
  "") ;;
  pause) only_pause=true ;;
  run-job) [ $# -eq 3 ] || { echo "usage: $0 run-job <ref> <dir>" >&2; exit 2; }
           job_ref=$2 job_dir=$(cd "$3" && pwd) ;;
  *) echo "usage: $0 [pause | run-job <ref> <dir>]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

SUITE=bookworm
# ca-certificates, netbase and tzdata: what python:3.11-slim-bookworm adds to debian:bookworm-slim.
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata
HOST_CA=/etc/ssl/certs/ca-certificates.crt

cache="$AIOPS_CACHE_DIR/images"
archives="$cache/archives"
export TMPDIR="$cache/tmp"  # buildah's scratch files (not /var/tmp)
BA=(nice -n 10 buildah --root "$cache/containers/storage" --runroot "$cache/containers/run" --storage-driver vfs)

log() { echo ">> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "hack/images.sh needs root (debootstrap, buildah's chroot isolation)"
for tool in buildah debootstrap gcc strip go flock findmnt; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install --no-install-recommends buildah debootstrap runc uidmap fuse-overlayfs gcc libc6-dev)"
done
mkdir -p "$cache" "$archives" "$TMPDIR" "$cache/containers/cni"
exec 9>"$cache/.lock"
flock 9  # one build at a time per cache
# buildah sets up its network backend even for chroot isolation, which creates
# /etc/cni/net.d/cni.lock: the system containers.conf with network_config_dir in the cache.
conf="$cache/containers/containers.conf"
{
  sys_conf=/usr/share/containers/containers.conf
  [ -r /etc/containers/containers.conf ] && sys_conf=/etc/containers/containers.conf
  if [ -r "$sys_conf" ] && grep -q '^\[network\]' "$sys_conf"; then
    awk -v dir="$cache/containers/cni" '{print} /^\[network\]/ {print "network_config_dir = \"" dir "\""}' "$sys_conf"
  else
    [ -r "$sys_conf" ] && cat "$sys_conf"
    printf '[network]\nnetwork_config_dir = "%s"\n' "$cache/containers/cni"
  fi
} >"$conf.tmp"
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$conf"
# containers/image keeps a blob-info cache in /var/lib/containers/cache for root, whatever --root
# says; if this run is what creates that directory, it removes it again on exit.
var_lib_containers=/var/lib/containers
[ -e "$var_lib_containers" ] && var_lib_containers=""

# What is created on the way is removed on every exit: working containers, mounts, scratch dirs.
containers=() work="" serve_pid="" unverified=""
cleanup() {
  local c m
  if [ -n "$serve_pid" ]; then kill -TERM "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  for c in "${containers[@]}"; do "${BA[@]}" rm "$c" >/dev/null 2>&1 || true; done
  # An image whose smoke test failed must not be taken for a good one by the next run.
  if [ -n "$unverified" ]; then "${BA[@]}" rmi "$unverified" >/dev/null 2>&1 || true; fi
  if [ -n "$work" ] && [ -d "$work" ]; then
    # debootstrap mounts /proc and /sys in the target; a failed run can leave them.
    for m in $(findmnt -rn -o TARGET | grep -F "$work/" | sort -r); do umount -l "$m" || true; done
    rm -rf --one-file-system "$work"
  fi
  if [ -n "$var_lib_containers" ] && [ -d "$var_lib_containers" ]; then
    rm -f "$var_lib_containers/cache/blob-info-cache-v1.boltdb"
    rmdir "$var_lib_containers/cache" "$var_lib_containers" 2>/dev/null || true
  fi
}
trap cleanup EXIT
work=$(mktemp -d "$cache/work.XXXXXX")


new_container() {  # new_container <image>: sets c to a new working container, removed on exit
  c=$("${BA[@]}" from --pull-never --quiet "$1")
  containers+=("$c")
}

forget_container() {  # after `buildah commit --rm`
  local kept=() c
  for c in "${containers[@]}"; do [ "$c" = "$1" ] || kept+=("$c"); done
  containers=("${kept[@]}")
}

drop_container() { "${BA[@]}" rm "$1" >/dev/null; forget_container "$1"; }

has_image() { "${BA[@]}" inspect --type image "$1" >/dev/null 2>&1; }

sha() { sha256sum | cut -c1-"${1:-64}"; }

if [ -n "$job_ref" ]; then
  has_image "$job_ref" || die "no image $job_ref: build it first (hack/images.sh)"
  new_container "$job_ref"
  job_env=()
  while IFS= read -r line; do [ -z "$line" ] || job_env+=(--env "$line"); done <"$job_dir/job.env"
  "${BA[@]}" run --isolation chroot --user 0:0 --volume "$job_dir:/job" --workingdir /job/work \
    "${job_env[@]}" "$c" -- bash -eo pipefail /job/job.sh
  exit 0
fi

# The Debian mirror of the host's apt sources (deb822 or one-line format): that is where
# debootstrap may fetch from. DEBIAN_MIRROR overrides.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      { uris = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, w, /[ \t]+/); uris = w[2] }
          if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == suite) ok = 1 }
        }
        if (ok && uris != "") { print uris; exit } }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list (set DEBIAN_MIRROR)"
  echo "$m"
}

# --- base: debootstrap minbase + python3 -------------------------------------------------------
arch=$(dpkg --print-architecture)
mirror=$(debian_mirror)
# As debian:bookworm-slim, the base of python:3.11-slim-bookworm: no documentation, manual pages
# or translations, now or from a later apt-get install; the copyright files stay.
SLIM_DPKG_CFG='path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*'
base_recipe="debootstrap --variant=minbase --arch=$arch --include=$BASE_PACKAGES $SUITE $mirror
then: apt-get clean, no apt lists, no dpkg/apt/bootstrap logs, empty /dev
dpkg.cfg.d/slim: $SLIM_DPKG_CFG
config: PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 CMD=python3"
base_key=$(printf '%s' "$base_recipe" | sha 12)
base_dir="$cache/base/$SUITE-$base_key"
base_ref="localhost/aiops-python:$SUITE-$base_key"

# Deletes inside the bootstrapped tree only: never across a mount point (debootstrap mounts /proc
# and /sys there; inside an LXC host it would bind-mount the host's /dev nodes).
prune() {  # prune <dir> [find tests...]: delete what is below <dir> in the rootfs
  local dir="$rootfs/$1"
  shift
  case $dir in "$work"/rootfs/*) ;; *) die "prune outside the rootfs: $dir" ;; esac
  [ -d "$dir" ] || return 0
  find "$dir" -xdev -mindepth 1 "$@" -delete
}

build_rootfs() {
  local started m
  rootfs="$work/rootfs"
  started=$(date +%s)
  log "debootstrap $SUITE minbase + python3 from $mirror"
  nice -n 10 debootstrap --variant=minbase --arch="$arch" --include="$BASE_PACKAGES" \
    "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  m=$(findmnt -rn -o TARGET | grep -F "$rootfs" || true)
  [ -z "$m" ] || die "debootstrap left mounts in the rootfs: $m"
  chroot "$rootfs" apt-get clean
  prune var/lib/apt/lists
  prune var/log \( -path "$rootfs/var/log/apt*" -o -name dpkg.log -o -name bootstrap.log \)
  prune dev
  printf '%s\n' "$SLIM_DPKG_CFG" >"$rootfs/etc/dpkg/dpkg.cfg.d/slim"
  prune usr/share/doc ! -type d ! -path "$rootfs/usr/share/doc/*/copyright"
  prune usr/share/doc -type d -empty
  for m in groff info linda lintian/overrides locale man; do prune "usr/share/$m"; done
  # debootstrap copies the host's resolv.conf and hostname; the runtime provides its own.
  : >"$rootfs/etc/resolv.conf"
  echo localhost >"$rootfs/etc/hostname"
  chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())' >"$work/python-version"
  chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages.txt"
  mkdir -p "$base_dir"
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$base_dir/rootfs.tar.tmp" .
  mv "$work/python-version" "$work/packages.txt" "$base_dir/"
  printf '%s\n' "$base_recipe" >"$base_dir/recipe.txt"
  mv "$base_dir/rootfs.tar.tmp" "$base_dir/rootfs.tar"
  rm -rf --one-file-system "$rootfs"
  log "base rootfs: Python $(cat "$base_dir/python-version"), $(wc -l <"$base_dir/packages.txt") packages, $(du -sh "$base_dir/rootfs.tar" | cut -f1) in $(( $(date +%s) - started ))s"
}

build_base_image() {
  local c started
  started=$(date +%s)
  new_container scratch
  "${BA[@]}" add "$c" "$base_dir/rootfs.tar" / >/dev/null
  "${BA[@]}" config --os linux --arch "$arch" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["python3"]' --created-by "debootstrap --variant=minbase --include=$BASE_PACKAGES $SUITE" \
    --label "org.opencontainers.image.title=aiops-python" \
    --label "org.opencontainers.image.description=Debian $SUITE minbase + Debian's python3 $(cat "$base_dir/python-version") (hack/images.sh)" \
    "$c"
  "${BA[@]}" commit --quiet --rm "$c" "$base_ref" >/dev/null
  forget_container "$c"
  log "$base_ref committed in $(( $(date +%s) - started ))s"
}


# --- pause: FROM scratch + the static pause binary of the pinned Kubernetes module ---------------
pause_src=$(cd "$here/k8s" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes 2>/dev/null || true)
if [ ! -f "$pause_src/build/pause/linux/pause.c" ]; then
  log "downloading k8s.io/kubernetes v$K8S_VERSION (for build/pause)"
  (cd "$here/k8s" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download k8s.io/kubernetes)
  pause_src=$(cd "$here/k8s" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes)
fi
pause_dir="$pause_src/build/pause"
[ -f "$pause_dir/linux/pause.c" ] || die "no build/pause/linux/pause.c in $pause_src"
pause_version=$(awk '$1 == "TAG" && $2 == "?=" {print $3; exit}' "$pause_dir/Makefile")
[ -n "$pause_version" ] || die "no pause TAG in $pause_dir/Makefile"
pause_cflags="-Os -Wall -Werror -static -DVERSION=v$pause_version-v$K8S_VERSION"
pause_key=$( { cat "$pause_dir/linux/pause.c"; echo "$pause_cflags"; gcc --version | head -n1
  dpkg-query -W -f '${Version}\n' libc6-dev 2>/dev/null || true; } | sha 12)
pause_ref="localhost/pause:$pause_version"
pause_archive="$archives/pause-$pause_version-$pause_key.oci.tar"

if [ ! -s "$pause_archive" ]; then
  started=$(date +%s)
  log "building $pause_ref (gcc $pause_cflags)"
  gcc $pause_cflags -o "$work/pause" "$pause_dir/linux/pause.c"
  strip "$work/pause"
  new_container scratch
  "${BA[@]}" copy --chmod 0755 "$c" "$work/pause" /pause >/dev/null
  "${BA[@]}" config --os linux --arch "$arch" --user 65535:65535 --entrypoint '["/pause"]' \
    --label "org.opencontainers.image.source=k8s.io/kubernetes@v$K8S_VERSION/build/pause" "$c"
  "${BA[@]}" commit --quiet --rm "$c" "$pause_ref" >/dev/null
  forget_container "$c"
  "$work/pause" -v >&2
  "${BA[@]}" push --quiet "$pause_ref" "oci-archive:$pause_archive.tmp:$pause_ref"
  mv "$pause_archive.tmp" "$pause_archive"
  log "$pause_ref built and exported in $(( $(date +%s) - started ))s"
fi

if $only_pause; then
  echo "pause=$pause_ref"
  echo "pause_archive=$pause_archive"
  exit 0
fi

[ -s "$base_dir/rootfs.tar" ] || build_rootfs
has_image "$base_ref" || build_base_image

# --- runtime and operator ----------------------------------------------------------------------
# The key of an image: its Dockerfile, .dockerignore, every file of the context that its COPY
# instructions read (modes and contents, as .dockerignore admits them) and the base.
image_key() {  # image_key <Dockerfile>
  local dockerfile=$1 sources
  # every source of each COPY from the context (all arguments but the destination)
  sources=$(awk 'toupper($1) == "COPY" && $2 !~ /^--/ {for (i = 2; i < NF; i++) print $i}' \
    "$repo/$dockerfile")
  [ -n "$sources" ] || die "no COPY from the context in $dockerfile"
  {
    echo "base=$base_ref"
    sha256sum "$repo/$dockerfile" "$repo/.dockerignore" | sed "s|$repo/||"
    # shellcheck disable=SC2086  # word splitting of the COPY sources is wanted
    (cd "$repo" && find $sources \( -name __pycache__ -o -name '*.egg-info' \) -prune \
        -o -type f ! -name '*.pyc' -printf '%m %p\n' | LC_ALL=C sort \
      | while read -r mode path; do echo "$mode $(sha256sum "$path")"; done)
  } | sha 12
}

runs_as() {  # runs_as <container> <uid:gid>: what `buildah run` (the image's USER) gets
  local got="" attempt
  # buildah 1.28's chroot isolation has lost the output of a short-lived process once (a cold
  # CI run: empty, exit 0); an empty answer is asked again, a wrong one fails at once.
  for attempt in 1 2 3; do
    got=$("${BA[@]}" run --isolation chroot "$1" -- sh -c 'echo "$(id -u):$(id -g)"')
    [ -z "$got" ] || break
    log "buildah run printed nothing (attempt $attempt); asking again"
  done
  [ "$got" = "$2" ] || die "the image runs as '$got', not $2"
}

smoke_runtime() {  # smoke_runtime <ref>: entry point, USER, model files readable, /readyz answers
  local c port ok=0 i
  new_container "$1"
  "${BA[@]}" run --isolation chroot "$c" -- aiops-runtime --help >/dev/null
  runs_as "$c" 10001:10001
  "${BA[@]}" run --isolation chroot "$c" -- python -c '
import hashlib, pathlib
files = sorted(p for p in pathlib.Path("/models/breast-cancer").iterdir() if p.is_file())
assert files, "no model files"
for p in files:
    print(hashlib.sha256(p.read_bytes()).hexdigest()[:12], p)' >&2 \
    || die "$1: UID 10001 cannot read /models/breast-cancer"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${BA[@]}" run --isolation chroot "$c" -- \
    aiops-runtime serve --model-dir /models/breast-cancer --host 127.0.0.1 --port "$port" \
    >"$work/serve.log" 2>&1 &
  serve_pid=$!
  for i in $(seq 1 120); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then ok=1; break; fi
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2) as r:
    sys.exit(r.status != 200)
EOF
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
  [ "$ok" = 1 ] || { cat "$work/serve.log" >&2; die "$1: aiops-runtime serve never answered /readyz"; }
  log "$1: /readyz answered 200 on 127.0.0.1:$port after ~$(( i / 2 ))s (as UID 10001, chrooted)"
  drop_container "$c"
}

smoke_operator() {  # smoke_operator <ref>: entry point, USER, the CRD it generates
  local c crd
  new_container "$1"
  "${BA[@]}" run --isolation chroot "$c" -- aiops-operator --help >/dev/null
  runs_as "$c" 10001:10001
  crd=$("${BA[@]}" run --isolation chroot "$c" -- aiops-operator generate-crd)
  grep -q '^kind: CustomResourceDefinition' <<<"$crd" || die "$1: aiops-operator generate-crd printed no CRD"
  log "$1: aiops-operator --help and generate-crd work (as UID 10001, chrooted)"
  drop_container "$c"
}

smoke_retrain() {  # smoke_retrain <ref>: the runtime's entry point, git, the runtime's USER
  local c
  new_container "$1"
  "${BA[@]}" run --isolation chroot "$c" -- aiops-runtime train --help >/dev/null
  "${BA[@]}" run --isolation chroot "$c" -- git --version >&2
  runs_as "$c" 10001:10001
  log "$1: aiops-runtime train and git run (as UID 10001, chrooted)"
  drop_container "$c"
}

build_image() {  # build_image <name> <Dockerfile> <smoke function> [target]; sets ref, archive
  local name=$1 dockerfile=$2 smoke=$3 target=${4:-} key started mounts=() targets=()
  key=$(image_key "$dockerfile")
  ref="localhost/aiops-quality-$name:$key"
  archive="$archives/aiops-quality-$name-$key.oci.tar"
  [ -s "$archive" ] && return 0
  if ! has_image "$ref"; then
    started=$(date +%s)
    log "building $ref from $dockerfile on $base_ref"
    # pip in the RUN steps trusts the host's CA bundle (a TLS-intercepting proxy's CA, maybe).
    [ -r "$HOST_CA" ] && mounts=(-v "$HOST_CA:$HOST_CA:ro")
    [ -z "$target" ] || targets=(--target "$target")
    (cd "$repo" && "${BA[@]}" bud --isolation chroot --pull-never --layers=false \
      --build-arg "PYTHON_IMAGE=$base_ref" "${mounts[@]}" "${targets[@]}" -f "$dockerfile" \
      -t "$ref" . >"$work/$name.log" 2>&1) \
      || { tail -n 40 "$work/$name.log" >&2; die "building $dockerfile failed (log above)"; }
    unverified=$ref
    "$smoke" "$ref"
    unverified=""
    log "$ref built and checked in $(( $(date +%s) - started ))s"
  fi
  started=$(date +%s)
  "${BA[@]}" push --quiet "$ref" "oci-archive:$archive.tmp:$ref"
  mv "$archive.tmp" "$archive"
  log "$ref exported in $(( $(date +%s) - started ))s to $archive"
}

build_image runtime Dockerfile.runtime smoke_runtime
runtime_ref=$ref runtime_archive=$archive
build_image operator Dockerfile.operator smoke_operator
operator_ref=$ref operator_archive=$archive
build_image retrain Dockerfile.runtime smoke_retrain retrain
retrain_ref=$ref retrain_archive=$archive

# Older builds only take room in the storage (vfs keeps a full copy of every layer); their
# archives stay in the cache.
"${BA[@]}" images --noheading --format '{{.Name}}:{{.Tag}}' \
  | grep -E '^localhost/(aiops-python|aiops-quality-(runtime|operator|retrain)|pause):' \
  | grep -vxF -e "$base_ref" -e "$pause_ref" -e "$runtime_ref" -e "$operator_ref" \
    -e "$retrain_ref" \
  | xargs -r "${BA[@]}" rmi >/dev/null || true

for a in "$pause_archive" "$runtime_archive" "$operator_archive"; do
  log "$(du -h "$a" | cut -f1)	$a"
done
echo "base=$base_ref"
echo "pause=$pause_ref"
echo "pause_archive=$pause_archive"
echo "runtime_archive=$runtime_archive"
echo "operator_archive=$operator_archive"
echo "retrain_archive=$retrain_archive"
echo "retrain=$retrain_ref"
echo "runtime=$runtime_ref"
echo "operator=$operator_ref"
