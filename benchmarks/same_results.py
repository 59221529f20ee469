"""Do two revisions of the code produce the same results? Byte for byte, on the smoke configs.

Runs each config with the workflow of a base revision (a git worktree) and with this working tree, each in
its own fresh working directory with its own copy of the package on ``PYTHONPATH``, then compares every
result file both produce: tables (``.csv``), per-example score tables and other frames (``.parquet``),
model weights (``.safetensors``) and JSON results. Provenance records, logs, the hub download record and the
Snakemake metadata are left out: they name the code version and timestamps, which are meant to differ.

    python benchmarks/same_results.py --base main             # smoke.yaml and smoke-hf.yaml
    python benchmarks/same_results.py --base HEAD~3 --config configs/smoke.yaml --keep /tmp/same

Exit status 0 when every compared file is identical and both sides wrote the same set of files; 1 otherwise
(the differing and one-sided files are listed). Used to check that a refactoring changes no result.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("configs/smoke.yaml", "configs/smoke-hf.yaml")
COMPARED = (".csv", ".parquet", ".safetensors", ".json")
SKIPPED_PARTS = ("logs", "hub", ".snakemake")
SKIPPED_SUFFIXES = (".provenance.json",)


def run(cmd: list[str], env: dict, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


def run_side(code: Path, config: str, workdir: Path, cores: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    workdir.mkdir(parents=True)
    if "smoke-hf" in config:  # the HF stand-ins the config points at, written by that side's code
        run([sys.executable, "-c", f"from kdprivacy import standins; standins.write_smoke_hf({str(workdir / 'hf')!r})"],
            env, cwd=workdir)
    run([sys.executable, "-m", "snakemake", "-s", str(code / "Snakefile"), "-d", str(workdir),
         "--configfile", str(code / config), "--cores", str(cores)], env)


def result_files(workdir: Path) -> dict[str, str]:
    """Relative path -> sha256 of every compared file under results/."""
    root = workdir / "results"
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix not in COMPARED or set(rel.parts) & set(SKIPPED_PARTS):
            continue
        if path.name.endswith(SKIPPED_SUFFIXES) or path.name == "provenance.json":
            continue
        out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def compare(base: dict[str, str], head: dict[str, str]) -> list[str]:
    problems = [f"only in base: {p}" for p in sorted(set(base) - set(head))]
    problems += [f"only in head: {p}" for p in sorted(set(head) - set(base))]
    problems += [f"differs: {p}" for p in sorted(set(base) & set(head)) if base[p] != head[p]]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare this working tree against")
    parser.add_argument("--config", action="append", help=f"config file, repeatable (default: {', '.join(CONFIGS)})")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary directory)")
    parser.add_argument("--reuse-base", action="store_true",
                        help="with --keep: reuse base runs finished there earlier (for the same --base)")
    args = parser.parse_args()
    configs = args.config or list(CONFIGS)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="same-results-"))
    scratch.mkdir(parents=True, exist_ok=True)
    base_code = scratch / "base-code"
    base_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.base], check=True, capture_output=True,
                              text=True).stdout.strip()
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_code)], capture_output=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_code), base_rev],
                   check=True, capture_output=True)
    failed = False
    try:
        for config in configs:
            name = Path(config).stem
            sides = {}
            for side, code in (("base", base_code), ("head", REPO)):
                workdir = scratch / f"{side}-{name}"
                done = scratch / f"{side}-{name}.done"
                if side == "base" and args.reuse_base and done.exists() and done.read_text() == base_rev:
                    print(f"== {config}: {side} reused from {workdir}", flush=True)
                else:
                    if workdir.exists():
                        shutil.rmtree(workdir)
                    print(f"== {config}: {side} ({code})", flush=True)
                    run_side(code, config, workdir, args.cores)
                    done.write_text(base_rev if side == "base" else "")
                sides[side] = result_files(workdir)
            problems = compare(sides["base"], sides["head"])
            print(f"{config}: {len(sides['head'])} files compared, {len(problems)} problems")
            for line in problems:
                print("   ", line)
            failed |= bool(problems) or not sides["head"]
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_code)], capture_output=True)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print("SAME" if not failed else "DIFFERENT")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
