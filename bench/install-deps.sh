#!/usr/bin/env bash
# The bench's own OS package: wrk (the load generator). The registries and clients it drives
# (docker-registry, skopeo, containerd/ctr) come from scripts/install-e2e-deps.sh.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/install-deps.sh: wrk missing and not root: apt-get install wrk" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends wrk || { apt-get update && apt-get install -y --no-install-recommends wrk; }
