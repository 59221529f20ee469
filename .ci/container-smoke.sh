#!/usr/bin/env bash
# The container, built and run (issue: "containers, executed"): build the CPU flavour of containers/Dockerfile
# with podman (.ci/container-build.sh), run a smoke config inside it, and compare its per-example tables with a run of the same config
# outside the container, value for value.
#
#   bash .ci/container-smoke.sh REFERENCE_DIR CONFIG [OVERRIDES]
#
# REFERENCE_DIR: the working directory of a finished run of CONFIG outside the container (CI: the SLURM smoke's,
# which runs with resources.threads 1; OVERRIDES, passed to --config, must repeat what that run was given).
# podman as root needs, on these machines (see README "Containers"): runc, the cgroupfs cgroup manager, no
# default ulimits; the run itself has no network.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
reference=$(cd "${1:?usage: container-smoke.sh REFERENCE_DIR CONFIG [OVERRIDES]}" && pwd)
config=$(realpath "${2:?usage: container-smoke.sh REFERENCE_DIR CONFIG [OVERRIDES]}")
overrides=${3:-}
work=$(mktemp -d /tmp/kdprivacy-container.XXXXXX)
image=localhost/kdprivacy:cpu
py=${PYTHON:-$repo/.venv/bin/python}

# The image (cached layers make this seconds when .ci/run has built it in the background already).
bash "$repo/.ci/container-build.sh"
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
pm() { podman --runtime /usr/bin/runc --cgroup-manager=cgroupfs "$@"; }
pm run --rm --network=none "$image" python -c \
  "import torch, kdprivacy; assert torch.version.cuda is None; print('torch', torch.__version__, 'kdprivacy', kdprivacy.__version__)"

echo "== $config inside the container (no network)"
t0=$SECONDS
mkdir -p "$work/run"
(cd "$repo" && git ls-files -z | xargs -0 tar -c) | tar -x -C "$work/run"
cp "$config" "$work/run/container-smoke.yaml"
extra=()
[ -z "$overrides" ] || extra=(--config "$overrides")
pm run --rm --network=none -v "$work/run:/repo" -w /repo -e HF_HUB_OFFLINE=1 -e HF_DATASETS_OFFLINE=1 \
  -e KDPRIVACY_DEVICE=cpu "$image" \
  snakemake --cores 2 --configfile container-smoke.yaml "${extra[@]}" >"$work/run.log" 2>&1 \
  || { tail -n 40 "$work/run.log"; exit 1; }
echo "   $((SECONDS - t0)) s"

echo "== the container's per-example tables against the run outside ($reference)"
"$py" - "$reference/results" "$work/run/results" <<'PY'
import sys
from pathlib import Path

import numpy as np
import pandas as pd

outside, inside = Path(sys.argv[1]), Path(sys.argv[2])
paths = sorted(p.relative_to(outside) for p in outside.glob("*/seed*/*/*.parquet")
               if p.parent.name in ("scores", "attacks", "memorization"))
assert paths, f"no per-example tables under {outside}"
for rel in paths:
    a, b = pd.read_parquet(outside / rel), pd.read_parquet(inside / rel)
    assert list(a.columns) == list(b.columns) and len(a) == len(b), rel
    for column in a.columns:
        x, y = a[column].tolist(), b[column].tolist()
        if any(isinstance(v, np.ndarray) for v in x):
            same = all(np.array_equal(u, v) for u, v in zip(x, y))
        else:
            same = a[column].equals(b[column])
        assert same, f"{rel}: column {column} differs inside the container"
weights = sorted(p.relative_to(outside) for p in outside.glob("*/seed*/models/*/model.safetensors"))
for rel in weights:
    assert (outside / rel).read_bytes() == (inside / rel).read_bytes(), f"{rel} differs inside the container"
mia = [pd.read_csv(d / "tables" / "mia.csv") for d in (outside, inside)]
pd.testing.assert_frame_equal(*mia)
print(f"ok: {len(paths)} per-example tables, {len(weights)} model weight files and mia.csv identical")
PY
echo "== container smoke passed"
