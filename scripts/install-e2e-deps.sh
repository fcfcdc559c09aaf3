#!/usr/bin/env bash
# Install the OS packages the end-to-end suite (tests/e2e) drives: real OCI clients
# (skopeo, podman, buildah, docker, containerd/ctr), their runtime helpers, and the
# reference registry used by PORTSIDE_E2E_TARGET=distribution (docker-registry, with
# apache2-utils for htpasswd). util-linux/mount provide unshare and bind mounts, which the
# suite uses to give skopeo/podman/buildah/dockerd private copies of hard-coded system dirs.
#
# Idempotent; meant for a Debian bookworm machine, run as root. The tests start their
# own private daemons (dockerd, containerd, docker-registry) and never rely on the
# system-wide services these packages may try to start.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-e2e-deps.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

packages=(
    skopeo
    podman
    buildah
    containerd
    docker.io
    docker-registry
    runc
    uidmap
    iptables
    fuse-overlayfs
    slirp4netns
    apache2-utils
    util-linux
    mount
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-e2e-deps.sh: all packages already installed"
    exit 0
fi

# Package maintainer scripts may try to start dockerd/containerd/docker-registry;
# forbid service starts during the install (the tests run private instances).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

echo "install-e2e-deps.sh: installing ${missing[*]}"
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
