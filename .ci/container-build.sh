#!/usr/bin/env bash
# Build the CPU flavour of containers/Dockerfile with podman as localhost/kdprivacy:cpu (the base image made
# here first: debootstrap of Debian bookworm, imported into podman, since no registry is reachable). Used by
# .ci/container-smoke.sh, and started by .ci/run in the background while the SLURM stage runs.
#
#   bash .ci/container-build.sh
#
# podman as root needs, on these machines (README "Containers"): runc, the cgroupfs cgroup manager, no default
# ulimits, host networking for the build (pip).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/kdprivacy-build.XXXXXX)
image=localhost/kdprivacy:cpu
base=localhost/debian:bookworm
py=${PYTHON:-$repo/.venv/bin/python}

need=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
pm() { podman --runtime /usr/bin/runc --cgroup-manager=cgroupfs "$@"; }

if ! pm image exists "$base"; then
  echo "== base image: debootstrap --variant=minbase bookworm"
  t0=$SECONDS
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log"; exit 1; }
  tar -C "$work/rootfs" -c . | pm import - "$base" >/dev/null
  rm -rf "$work/rootfs"
  echo "   $((SECONDS - t0)) s"
fi

echo "== build $image (CPU flavour of containers/Dockerfile)"
t0=$SECONDS
torch_args=(--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu)
wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then  # this machine's local CPU wheel (download.pytorch.org is not reachable here)
  torch_args=(--build-arg TORCH_INDEX=https://pypi.org/simple --build-arg PIP_FIND_LINKS=/opt/wheels
              --volume /opt/wheels:/opt/wheels:ro)
fi
# pip in the build trusts what pip here trusts (these machines reach PyPI through a TLS-intercepting proxy)
ca=$("$py" -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)
[ -f "$ca" ] && torch_args+=(--volume "$ca:/etc/ssl/certs/host-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/host-ca.crt)
pm build --network=host -f "$repo/containers/Dockerfile" -t "$image" \
  --build-arg BASE="$base" --build-arg FLAVOUR=cpu --build-arg TORCH_CUDA=none "${torch_args[@]}" \
  "$repo" >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log"; exit 1; }
echo "   $((SECONDS - t0)) s; $(pm image inspect "$image" --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')"
