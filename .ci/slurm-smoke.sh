#!/usr/bin/env bash
# Stand up a real single-node SLURM 22.05 cluster (with a fake GPU), run the spine of configs/smoke.yaml through the
# SLURM executor with profiles/slurm, check the results, and stop the daemons by pid (slurm-ci.md).
# Usage: .ci/slurm-smoke.sh [workdir]   (root, Debian; installs slurm-wlm with apt when missing)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/kdprivacy-slurm.XXXXXX)}
state=$(mktemp -d /tmp/slurm-state.XXXXXX)
host=$(hostname -s)
py=${PYTHON:-$repo/.venv/bin/python}

if ! command -v slurmctld >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >/dev/null
fi

stop() {
  for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid" /run/munge/munged.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
trap stop EXIT

install -d -o munge -g munge /run/munge
[ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null || runuser -u munge -- /usr/sbin/munged
munge -n | unmunge >/dev/null

[ -e /dev/fakegpu0 ] || mknod /dev/fakegpu0 c 1 3
node=$(slurmd -C | head -n 1)
mem_total=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
node=$(echo "$node" | sed -E "s/RealMemory=[0-9]+/RealMemory=$((mem_total * 8 / 10))/")
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=citest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
GresTypes=gpu
$node Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=$host Name=gpu File=/dev/fakegpu0" > /etc/slurm/gres.conf
mkdir -p "$state/ctld" "$state/d"
slurmctld -i
slurmd
for _ in $(seq 60); do [ "$(sinfo -h -N -o %t 2>/dev/null | head -n1)" = "idle" ] && break; sleep 1; done
sinfo -N

# The site template with this cluster's values filled in: one partition, "debug".
profile=$(mktemp -d /tmp/slurm-profile.XXXXXX)
sed -E 's/slurm_partition: "[^"]*"/slurm_partition: "debug"/' "$repo/profiles/slurm/config.yaml" > "$profile/config.yaml"

# The smoke config cut to the spine (teacher, No-KD, cached KD, SeqKD; every attack and memorization): every
# kind of job still runs under SLURM, in a third of the time; the full smoke config runs in the tests.
cfg="$profile/smoke-slurm.yaml"
"$py" - "$repo/configs/smoke.yaml" "$cfg" <<'PY'
import sys
import yaml
raw = yaml.safe_load(open(sys.argv[1]))
family = raw["families"]["gpt2"]
family["students"] = {k: v for k, v in family["students"].items() if k in ("nokd-small", "kd-small", "seqkd-small")}
family.pop("ablations", None)
raw["blocks"], raw["utility"] = {"enabled": False}, {"enabled": False}
yaml.safe_dump(raw, open(sys.argv[2], "w"), sort_keys=False)
PY
mkdir -p "$work" && cp "$cfg" "$work/smoke-slurm.yaml"  # the config of this run, for .ci/container-smoke.sh

echo "== smoke config (spine) through the SLURM executor in $work"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# The GPU is fake (no CUDA): jobs given one would stop (runtime.check_gpus); run them on the CPU on purpose.
export KDPRIVACY_DEVICE=cpu
timeout 2400 "$py" -m snakemake -s "$repo/Snakefile" -d "$work" --configfile "$cfg" \
  --workflow-profile "$profile" --executor slurm --jobs 2 \
  --slurm-status-command squeue --slurm-init-seconds-before-status-checks 10 \
  --config resources='{gpu: 0, train_gpus: 1, threads: 1}'

echo "== checking results"
"$py" - "$work" <<'PY'
import sys
from pathlib import Path
import pandas as pd
work = Path(sys.argv[1])
mia = pd.read_csv(work / "results/tables/mia.csv")
# A cell with a note is NA by design (the No-KD student has no independent No-KD reference); every
# other AUC is in [0, 1], and there is at least one of those.
tested = mia["note"].isna() | (mia["note"] == "") if "note" in mia else pd.Series(True, index=mia.index)
assert tested.sum() > 0 and mia.loc[tested, "auc"].between(0, 1).all(), mia.loc[tested]
assert mia.loc[~tested, "auc"].isna().all(), mia.loc[~tested]
assert (work / "results/figures/mia_auc_heatmap.png").stat().st_size > 0
# The plugin deletes the logs of successful SLURM jobs; the rule logs record the job id instead.
in_slurm = [p for p in (work / "results" / "logs").rglob("*.log") if "SLURM_JOB_ID=" in p.read_text(errors="replace")]
assert len(in_slurm) >= 10, f"only {len(in_slurm)} jobs ran under SLURM"
print(f"ok: {len(mia)} MIA rows, {len(in_slurm)} jobs ran as SLURM jobs")
PY
grep -h "SLURM_JOB_ID=" "$work"/results/logs/train_teacher/*/*.log | grep -q "CUDA_VISIBLE_DEVICES=0" \
  || { echo "train_teacher did not run as a SLURM job with a GPU allocated"; exit 1; }
echo "== SLURM smoke run passed"

# Preemption (#16.2): a longer teacher training submitted through SLURM is sent the profile's signal
# (`scancel --signal=URG`, what `--signal=URG@600` does before the time limit: every process of the step);
# it must checkpoint, fail cleanly, be resubmitted by `retries`, resume, and end with the same weights as the
# same training run without SLURM and without a signal.
echo "== preemption: scancel --signal=URG a running train_teacher job"
teacher=results/gpt2/seed0/models/teacher
log=results/logs/train_teacher/gpt2/seed0.log
long='families={gpt2: {teacher: {train: {epochs: 300}}}}'
for d in preempt reference; do  # everything upstream of the teacher, as the smoke run made it
  mkdir -p "$work.$d" && cp -a "$work/results" "$work.$d/" && rm -rf "$work.$d/results/gpt2/seed0"
done
"$py" -m snakemake -s "$repo/Snakefile" -d "$work.preempt" "$teacher" --configfile "$cfg" \
  --workflow-profile "$profile" --executor slurm --jobs 1 \
  --slurm-status-command squeue --slurm-init-seconds-before-status-checks 10 \
  --config resources='{gpu: 0, train_gpus: 1, threads: 1}' "$long" > "$work.preempt.out" 2>&1 &
smk=$!
job=""
for _ in $(seq 600); do
  if [ -f "$work.preempt/$log" ] && grep -q "epoch 2/300" "$work.preempt/$log"; then
    job=$(grep -o "SLURM_JOB_ID=[0-9]*" "$work.preempt/$log" | head -n 1 | cut -d= -f2); break
  fi
  kill -0 "$smk" 2>/dev/null || break
  sleep 0.5
done
[ -n "$job" ] || { tail -n 40 "$work.preempt.out"; echo "train_teacher never reached epoch 2 under SLURM"; exit 1; }
scancel --signal=URG "$job"
echo "   signalled SLURM job $job"
wait "$smk" || { tail -n 60 "$work.preempt.out"; echo "the preempted workflow did not finish"; exit 1; }
# Snakemake starts the rule's log afresh for the resubmitted job; the failed job's rule log is in its output
# (the profile's show-failed-logs).
urg=$("$py" -c 'import signal; print(int(signal.SIGURG))')
grep -qs "received signal $urg" "$work.preempt.out" \
  || { echo "the training script of SLURM job $job did not catch the signal"; exit 1; }
grep -q "SLURM-job '$job' failed" "$work.preempt.out" || { echo "SLURM job $job did not fail as preempted"; exit 1; }
again=$(grep -o "SLURM_JOB_ID=[0-9]*" "$work.preempt/$log" | head -n 1 | cut -d= -f2)
[ -n "$again" ] && [ "$again" != "$job" ] || { echo "train_teacher was not resubmitted as a new SLURM job"; exit 1; }
grep -q "resuming from checkpoint" "$work.preempt/$log" || { echo "the resubmitted job $again did not resume"; exit 1; }
KDPRIVACY_DEVICE=cpu "$py" -m snakemake -s "$repo/Snakefile" -d "$work.reference" "$teacher" \
  --configfile "$cfg" --cores 1 --config resources='{gpu: 0, train_gpus: 1, threads: 1}' "$long" -q > /dev/null
cmp "$work.preempt/$teacher/model.safetensors" "$work.reference/$teacher/model.safetensors" \
  || { echo "preempted-and-resumed weights differ from the uninterrupted run"; exit 1; }
echo "== preemption passed: SLURM job $job signalled, resubmitted as $again, resumed ($(grep -o 'resuming from checkpoint.*' "$work.preempt/$log" | grep -o 'step [0-9]*')), identical model.safetensors"
