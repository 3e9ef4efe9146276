#!/usr/bin/env bash
# Builds a local stand-in for SAM's base image public.ecr.aws/lambda/provided:al2023-arm64 from
# Debian's arm64 packages, for machines that cannot pull from public.ecr.aws (CI here: only the
# package registries are reachable). `sam local invoke --skip-pull-image` then uses it; SAM adds
# its own runtime interface emulator (aws-lambda-rie, shipped in the SAM CLI package) on top.
#
#   scripts/lambda_standin_image.sh          build the image unless it exists
#   scripts/lambda_standin_image.sh --force  rebuild it
#
# What the functions need from the image: the glibc loader and libraries, libgcc_s (unwinding),
# CA certificates (HTTPS to a real AWS endpoint), and /bin/sh, mv and chmod (SAM's Dockerfile runs
# `mv` and `chmod` on the emulator). Everything else of Amazon Linux is left out.
#
# Needs: Debian or Ubuntu with the arm64 architecture enabled
# (`dpkg --add-architecture arm64 && apt-get update`), a running Docker, and qemu-user-static
# registered with binfmt_misc (flag F), so that the arm64 image runs on an x86_64 host.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${LAMBDA_BASE_IMAGE:-public.ecr.aws/lambda/provided:al2023-arm64}"
WORK="$ROOT/.local/standin-image"
PACKAGES=(libc6:arm64 libgcc-s1:arm64 dash:arm64 coreutils:arm64 ca-certificates
  libacl1:arm64 libattr1:arm64 libselinux1:arm64 libpcre2-8-0:arm64 libgmp10:arm64)

LOG_TAG=standin-image
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

if [ "${1:-}" != --force ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists (--force rebuilds it)"
  exit 0
fi

dpkg --print-foreign-architectures | grep -qx arm64 \
  || { log "enable arm64 packages first: dpkg --add-architecture arm64 && apt-get update"; exit 1; }
[ "$(uname -m)" = aarch64 ] || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
  || { log "register qemu-aarch64 with binfmt_misc first (apt-get install qemu-user-static; see docs/testing.md)"; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/debs" "$WORK/rootfs"
# apt-get download writes into the current directory; _apt may not read it, which only warns.
(cd "$WORK/debs" && apt-get download "${PACKAGES[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
[ "$(find "$WORK/debs" -name '*.deb' | wc -l)" -eq "${#PACKAGES[@]}" ] \
  || { log "not every package was downloaded (see above)"; exit 1; }
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/rootfs"; done

cd "$WORK/rootfs"
# bookworm is merged-/usr: the packages install under usr/, the image needs the top-level links.
for dir in bin sbin lib; do [ -e "$dir" ] || ln -s "usr/$dir" "$dir"; done
ln -sf dash usr/bin/sh
mkdir -p etc/ssl/certs var/task var/runtime var/rapid opt tmp
chmod 1777 tmp
# What update-ca-certificates would have produced: one bundle of every certificate.
find usr/share/ca-certificates -name '*.crt' -print0 | sort -z | xargs -0 cat >etc/ssl/certs/ca-certificates.crt
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >etc/group
# As Amazon Linux has it: /etc/hosts before DNS. Without the file glibc asks DNS first, and the
# function's 0.5 s connect timeout (which covers resolving) expires on a machine whose resolver
# does not answer, before --add-host's host.docker.internal is found.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >etc/nsswitch.conf

# `docker import` would record the host's architecture (the daemon ignores its --platform), and
# SAM asks for linux/arm64: the image is written in `docker save` form with an arm64 config
# instead, with the same working directory and task root as the real image.
IMAGE_DIR="$WORK/image"
mkdir -p "$IMAGE_DIR"
tar -C "$WORK/rootfs" --numeric-owner --owner=0 --group=0 -cf "$IMAGE_DIR/layer.tar" .
layer_sha="$(sha256sum "$IMAGE_DIR/layer.tar" | cut -d' ' -f1)"
mkdir -p "$IMAGE_DIR/$layer_sha"
mv "$IMAGE_DIR/layer.tar" "$IMAGE_DIR/$layer_sha/layer.tar"
cat >"$IMAGE_DIR/config.json" <<JSON
{"architecture": "arm64", "os": "linux",
 "created": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "config": {"WorkingDir": "/var/task",
            "Env": ["LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime",
                    "PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin", "LANG=en_US.UTF-8",
                    "TZ=:/etc/localtime"]},
 "rootfs": {"type": "layers", "diff_ids": ["sha256:$layer_sha"]},
 "history": [{"created_by": "scripts/lambda_standin_image.sh (Debian arm64 packages)"}]}
JSON
config_sha="$(sha256sum "$IMAGE_DIR/config.json" | cut -d' ' -f1)"
mv "$IMAGE_DIR/config.json" "$IMAGE_DIR/$config_sha.json"
printf '[{"Config": "%s.json", "RepoTags": ["%s"], "Layers": ["%s/layer.tar"]}]\n' \
  "$config_sha" "$IMAGE" "$layer_sha" >"$IMAGE_DIR/manifest.json"
tar -C "$IMAGE_DIR" -c . | docker load >/dev/null
# SAM builds its emulator image (<repo>:<tag>-rapid-<arch>...) on top of this one once and reuses
# it while it exists: remove the old ones so that the next invoke builds on the new base.
stale="$(docker images --format '{{.Repository}}:{{.Tag}}' "${IMAGE%%:*}" | grep -- '-rapid' || true)"
[ -z "$stale" ] || docker rmi $stale >/dev/null
rm -rf "$IMAGE_DIR"
docker run --rm --platform linux/arm64 "$IMAGE" /bin/sh -c 'mv --version >/dev/null && uname -m' \
  | grep -qx aarch64 || { log "the image does not run (qemu-aarch64 binfmt?)"; exit 1; }
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
