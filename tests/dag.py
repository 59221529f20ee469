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
