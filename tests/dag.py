"""The planned jobs of the workflow for a config, with their evaluated params, inputs and resources.

Builds the DAG through Snakemake's API exactly as ``snakemake -n --forceall`` would (no job runs), so a test
sees what every job would receive. Run in a subprocess (Snakemake changes the working directory)::

    python tests/dag.py --configfile CONFIG --workdir DIR --out jobs.json [--profile-resources]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def plan(configfile: Path, workdir: Path, config_overrides: dict | None = None) -> list[dict]:
    from snakemake.api import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        SnakemakeApi,
        StorageSettings,
    )

    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile], config=config_overrides or {}),
            storage_settings=StorageSettings(),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        wf.dag(DAGSettings(forceall=True))
        workflow = wf._workflow  # the DAG API prints; the jobs are on the workflow object it builds
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        jobs = []
        for job in workflow.dag.jobs:
            params = {k: v for k, v in job.params.items()}
            resources = {k: v for k, v in job.resources.items() if k != "_cores" and not k.startswith("_")}
            jobs.append({
                "rule": job.rule.name,
                "wildcards": dict(job.wildcards.items()),
                "params": json.loads(json.dumps(params, default=str)),
                "input": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in job.input.items()},
                "output": [str(p) for p in job.output],
                "resources": json.loads(json.dumps(resources, default=str)),
                "threads": job.threads,
            })
        return jobs


def plan_jobs(configfile: Path, workdir: Path) -> list[dict]:
    """:func:`plan` in a subprocess, offline (what the tests call)."""
    import os
    import subprocess

    out = Path(workdir) / "jobs.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--configfile", str(configfile), "--workdir", str(workdir), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(f"planning {configfile} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configfile", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="{}", help="JSON of config overrides")
    args = parser.parse_args(argv)
    jobs = plan(args.configfile.resolve(), args.workdir.resolve(), json.loads(args.config))
    args.out.write_text(json.dumps(jobs, indent=1))


if __name__ == "__main__":
    sys.exit(main())
