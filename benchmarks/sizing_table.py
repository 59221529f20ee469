"""What every heavy job of a config asks the scheduler for (the README's sizing table), offline.

    python benchmarks/sizing_table.py configs/paper-*.yaml

Plans each config as ``snakemake -n`` would (tests/dag.py) and prints, per rule and model, the GPUs, host
memory, wall time and the GPU memory the sizing rule estimates (kdprivacy.sizing).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
HEAVY = ("train_teacher", "train_init", "train_student", "generate_teacher", "score_model", "score_reference",
         "mope", "per_block", "memorization", "utility")


def rows(configfile: Path) -> list[dict]:
    from dag import plan_jobs

    from kdprivacy import config, sizing

    cfg = config.load_yaml(str(configfile))
    with tempfile.TemporaryDirectory() as tmp:
        jobs = plan_jobs(configfile, Path(tmp))
    out = []
    for job in jobs:
        if job["rule"] not in HEAVY:
            continue
        wc = job["wildcards"]
        work = sizing.work_for(cfg, job["rule"], wc)
        out.append({
            "config": configfile.stem, "rule": job["rule"],
            "job": "/".join(str(wc[k]) for k in ("family", "model", "student", "base", "ref") if k in wc),
            "gpu": job["resources"].get("gpu"), "mem_gb": job["resources"]["mem_mb"] / 1000,
            "hours": job["resources"]["runtime"] / 60, "gpu_gb": work.gpu_gb() if work.gpus else 0.0,
        })
    return out


def main(argv: list[str]) -> None:
    import pandas as pd

    table = pd.DataFrame([r for path in argv for r in rows(Path(path))])
    worst = table.sort_values("hours").groupby(["config", "rule"]).tail(1)
    print(worst.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main(sys.argv[1:])
