"""Job resources from the models a job holds and the work it does: host memory, GPU memory and wall time.

The sizing rule (README "Sizing"), per job:

- **Bytes per parameter**, by how a model is held: trained in full 16 (fp32 weights, gradients and AdamW's
  two moments); frozen, by its dtype: 4 (float32), 2 (bfloat16, float16), 1 (8bit), 0.5 (4bit). A LoRA-trained
  model is its frozen base (float32, as training loads it, or its QLoRA quantization) plus an adapter of ~1%
  of the parameters trained in full.
- **GPU memory** = the held models + activations (20% + 2 GB), **per GPU**: it must fit one
  ``resources.gpu_mem_gb``, whatever the job's number of GPUs (:meth:`Work.gpu_gb_per_gpu`). With several GPUs
  a training job runs DDP (``train.parallel: ddp``, the default) -- every GPU holds the whole model, its
  gradients and AdamW state, so the per-GPU figure is the whole job's -- or FSDP (``train.parallel: fsdp``),
  which shards the trained parameters' gradients and AdamW moments (12 of their 16 bytes) over the N GPUs but
  gathers their full weights (4 bytes) for sampling and dev scoring; frozen models (a teacher, a LoRA or
  QLoRA base) are counted whole. Other multi-GPU jobs count the whole job per GPU. A config that cannot fit is
  reported at planning (:func:`warnings`).
- **Host memory** (``mem_mb``): a GPU job holds one model's weights at a time while loading them, plus 8 GB of
  data and runtime; a CPU job holds everything (as on the GPU) plus 2 GB.
- **Wall time** (``runtime``, minutes) = ``resources.runtime_min`` + 2 x FLOPs / throughput. FLOPs per token:
  6N trained in full, 4N trained with LoRA (no weight gradients of the frozen base), 2N forward only;
  tokens = examples x ``max_length`` (an upper bound). Throughput: ``resources.gpu_tflops`` (achieved, not
  peak) per GPU, ``resources.cpu_gflops`` on the CPU; batched decoding runs at a quarter of it (memory-bound).
- A **retry** (``attempt`` 2, 3, ...) asks for 50% more memory and time each time, capped at
  ``resources.max_mem_mb`` / ``resources.max_runtime_min`` (what a node and a partition offer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kdprivacy.kd import METHODS

BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.0, "4bit": 0.5}
TRAINED_BYTES = 16.0
GATHERED_BYTES = 4.0  # of a trained parameter's 16, the fp32 weight FSDP gathers whole on every GPU
LORA_FRACTION = 0.01
DECODE_EFFICIENCY = 0.25  # batched KV-cache decoding is memory-bound: ~a quarter of dense throughput
SAFETY = 2.0
GROWTH = 0.5


@dataclass(frozen=True)
class Held:
    """One model a job holds: its parameters, how it trains (``None`` = frozen, ``full``, ``lora``) and its
    storage (a dtype, or a quantization)."""

    n_params: float
    train: str | None = None
    storage: str = "float32"

    @property
    def bytes(self) -> float:
        if self.train == "full":
            return TRAINED_BYTES * self.n_params
        frozen = BYTES[self.storage] * self.n_params
        if self.train == "lora":
            return frozen + TRAINED_BYTES * LORA_FRACTION * self.n_params
        return frozen

    @property
    def trained_params(self) -> float:
        """Parameters with gradients and AdamW state: all of a full fine-tune, the ~1% adapter of LoRA."""
        if self.train == "full":
            return self.n_params
        return LORA_FRACTION * self.n_params if self.train == "lora" else 0.0

    def bytes_per_gpu(self, shards: int = 1) -> float:
        """Bytes on each of ``shards`` FSDP ranks: the trained parameters' gradients and AdamW moments
        (16 - 4 bytes) split over them, their weights (4 bytes, gathered for sampling / dev scoring) and
        anything frozen kept whole; ``shards`` 1 = :attr:`bytes`."""
        sharded = (TRAINED_BYTES - GATHERED_BYTES) * self.trained_params
        return self.bytes - sharded + sharded / max(1, int(shards))

    @property
    def load_bytes(self) -> float:
        """Host bytes while loading: the weights in their storage dtype (a trained model loads in fp32)."""
        return (4.0 if self.train == "full" else BYTES[self.storage]) * self.n_params


@dataclass
class Work:
    """What a job does: the models it holds, and its FLOPs by kind (dense passes vs token-by-token decoding);
    ``parallel`` is how a training job uses several GPUs (its ``train.parallel``: ``ddp`` or ``fsdp``)."""

    held: list[Held]
    flops: float = 0.0
    decode_flops: float = 0.0
    gpus: int = 0
    notes: list[str] = field(default_factory=list)
    parallel: str = "ddp"

    def train(self, model: Held, tokens: float) -> Work:
        """A trained model's forward and backward over ``tokens``."""
        self.flops += (6.0 if model.train == "full" else 4.0) * model.n_params * tokens
        return self

    def forward(self, model: Held, tokens: float) -> Work:
        self.flops += 2.0 * model.n_params * tokens
        return self

    def decode(self, model: Held, tokens: float) -> Work:
        self.decode_flops += 2.0 * model.n_params * tokens
        return self

    def gpu_gb(self) -> float:
        """The whole job's GPU memory (GB): held models + 20% + 2 GB (as held on one device)."""
        return 1.2 * sum(m.bytes for m in self.held) / 1e9 + 2.0

    @property
    def shards(self) -> int:
        """Over how many GPUs the trained model's gradients and optimizer state are split: the GPUs under
        FSDP, else 1 (DDP and single-GPU jobs hold everything on every GPU)."""
        return max(1, self.gpus) if self.parallel == "fsdp" else 1

    def gpu_gb_per_gpu(self) -> float:
        """GPU memory (GB) each of the job's GPUs needs: :meth:`gpu_gb` under DDP or on one GPU; under FSDP
        the trained parameters' 12 bytes of gradients and AdamW moments are split over the GPUs, their weights
        (gathered for sampling and dev scoring) and frozen models are whole; activations 20% + 2 GB."""
        return 1.2 * sum(m.bytes_per_gpu(self.shards) for m in self.held) / 1e9 + 2.0


def host_mem_mb(work: Work, mem_mb_min: int) -> int:
    if work.gpus > 0:
        held = 8000 + max((m.load_bytes for m in work.held), default=0.0) / 1e6
    else:
        held = 2000 + 1000 * work.gpu_gb()
    return int(max(mem_mb_min, math.ceil(held)))


def runtime_min(work: Work, runtime_floor: int, gpu_tflops: float, cpu_gflops: float) -> int:
    per_second = gpu_tflops * 1e12 * work.gpus if work.gpus > 0 else cpu_gflops * 1e9
    seconds = (work.flops + work.decode_flops / DECODE_EFFICIENCY) / per_second
    return int(math.ceil(runtime_floor + SAFETY * seconds / 60.0))


def grown(value: int, attempt: int, cap: int) -> int:
    """``value`` for retry ``attempt`` (1 = first try): +50% per retry, never above ``cap``."""
    return int(min(cap, math.ceil(value * (1.0 + GROWTH * (max(1, int(attempt)) - 1)))))


def request(work: Work, res, attempt: int = 1) -> dict[str, int]:
    """``{"mem_mb", "runtime"}`` for ``work`` under the config's ``resources`` section."""
    mem = host_mem_mb(work, res.mem_mb_min)
    minutes = runtime_min(work, res.runtime_min, res.gpu_tflops, res.cpu_gflops)
    return {
        "mem_mb": grown(mem, attempt, res.max_mem_mb),
        "runtime": grown(minutes, attempt, res.max_runtime_min),
    }


def warnings(name: str, work: Work, res) -> list[str]:
    """Why ``work`` will not run as configured: GPU memory or wall time beyond what a node offers."""
    out = []
    per_gpu = work.gpu_gb_per_gpu()
    if work.gpus > 0 and per_gpu > res.gpu_mem_gb:
        trains = any(m.trained_params for m in work.held)
        fix = "LoRA/QLoRA, a quantized frozen teacher, "
        if work.gpus == 1:
            how = "on its one GPU"
            if trains:
                fix += "FSDP over several GPUs (resources.train_gpus > 1, train.parallel: fsdp), "
        elif not trains:
            how = f"on each of its {work.gpus} GPUs (every GPU holds the whole job)"
        elif work.parallel == "fsdp":
            how = (f"on each of its {work.gpus} GPUs (FSDP: gradients and AdamW state sharded, but the full "
                   "weights gathered and frozen models whole on every GPU)")
            fix += "more GPUs (resources.train_gpus), "
        else:
            how = (f"on each of its {work.gpus} GPUs (DDP: every GPU holds the whole model; train.parallel: "
                   "fsdp shards it)")
            fix += "train.parallel: fsdp, "
        out.append(
            f"{name}: needs ~{per_gpu:.0f} GB of GPU memory per GPU {how}, more than resources.gpu_mem_gb "
            f"({res.gpu_mem_gb:g} GB): use {fix}or larger GPUs"
        )
    minutes = runtime_min(work, res.runtime_min, res.gpu_tflops, res.cpu_gflops)
    if minutes > res.max_runtime_min:
        out.append(
            f"{name}: estimated {minutes / 60:.0f} h, capped at resources.max_runtime_min ({res.max_runtime_min} "
            "min): checkpointing lets a timed-out training job resume, other jobs need fewer examples/passes"
        )
    mem = host_mem_mb(work, res.mem_mb_min)
    if mem > res.max_mem_mb:
        out.append(f"{name}: needs ~{mem / 1000:.0f} GB host memory, capped at resources.max_mem_mb")
    return out


# ------------------------------------------------------------------------------------------ workloads
TRAIN_RULES = ("pretrain_base", "train_teacher", "train_init", "train_student")


def pool_sizes(cfg) -> dict[str, float]:
    """Examples per pool: exact split sizes for synthetic data, ``resources.pool_examples`` otherwise."""
    split, data = cfg.data.split, cfg.data
    if data.source == "synthetic":
        rest = data.synthetic.n_examples - split.nonmember - split.dev
        fixed = (split.private or 0) + (split.public or 0)
        halves = (split.private is None) + (split.public is None)
        half = (rest - fixed) / halves if halves else 0.0
        private = split.private or half
        public = split.public or half
        pretrain = max(0.0, rest - private - public)
    else:
        private = split.private or cfg.resources.pool_examples
        public = split.public or cfg.resources.pool_examples
        pretrain = cfg.resources.pool_examples
    return {"private": private, "public": public, "nonmember": split.nonmember, "dev": split.dev,
            "pretrain": pretrain}


def n_layers(family, base: str) -> int:
    """Decoder blocks of a base: from its spec, ``n_layers``, a local directory's config.json, else 32."""
    import json
    import os

    spec = family.bases[base]
    if spec.from_scratch is not None:
        return spec.from_scratch.n_layer
    if spec.n_layers:
        return spec.n_layers
    path = os.path.join(os.path.expanduser(spec.name_or_path), "config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            conf = json.load(handle)
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(conf.get(key), int):
                return conf[key]
    return 32


def _trained(family, base: str, lora) -> Held:
    if lora is None:
        return Held(family.n_params(base), "full")
    # training loads float32 master weights whatever the storage dtype; QLoRA holds the base quantized
    return Held(family.n_params(base), "lora", lora.quantization or "float32")


def _frozen_teacher(family) -> Held:
    spec = family.bases[family.teacher.base]
    return Held(family.n_params(family.teacher.base), None, family.teacher.quantization or spec.dtype)


def _frozen(family, base: str) -> Held:
    return Held(family.n_params(base), None, family.bases[base].dtype)


def _eval_examples(cfg, caps=None) -> float:
    sizes = pool_sizes(cfg)
    ev = cfg.evaluation
    members, nonmembers = caps or (ev.max_members, ev.max_nonmembers)
    return min(members or math.inf, sizes["private"]) + min(nonmembers or math.inf, sizes["nonmember"])


def work_for(cfg, rule: str, wildcards: dict) -> Work:
    """The :class:`Work` of one job of ``rule`` with ``wildcards`` under the validated config ``cfg``."""
    res, length = cfg.resources, cfg.data.max_length
    new_tokens = length - cfg.data.max_prompt_length
    gpus = (res.train_gpus if res.train_gpus is not None else res.gpu) if rule in TRAIN_RULES else res.gpu
    sizes = pool_sizes(cfg)
    family = cfg.families[wildcards["family"]]
    model = wildcards.get("model") or wildcards.get("student")
    if rule == "pretrain_base":
        held = _trained(family, wildcards["base"], None)
        tokens = sum(sizes[p] for p in family.pretrain.pools) * length * family.pretrain.train.epochs
        return Work([held], gpus=gpus, parallel=family.pretrain.train.parallel).train(held, tokens)
    if rule == "train_teacher":
        held = _trained(family, family.teacher.base, family.teacher.lora)
        train = family.teacher.train
        work = Work([held], gpus=gpus, parallel=train.parallel)
        return work.train(held, sizes["private"] * length * train.epochs).forward(
            held, sizes["dev"] * length * train.epochs)
    if rule == "train_init":
        held = _trained(family, wildcards["base"], family.init.lora)
        train = family.init.train
        work = Work([held], gpus=gpus, parallel=train.parallel)
        return work.train(held, sizes["public"] * length * train.epochs)
    if rule == "train_student":
        student = family.all_students()[model][0]
        held = _trained(family, student.base, student.lora)
        tokens = sizes["public"] * length * student.train.epochs
        work = Work([held], gpus=gpus, parallel=student.train.parallel).train(held, tokens).forward(
            held, sizes["dev"] * length * student.train.epochs)
        spec = METHODS[student.method]  # the method registry: what the method holds and samples
        if spec.needs_teacher(student.params):
            teacher = _frozen_teacher(family)
            work.held.append(teacher)
            work.forward(teacher, tokens)
        if spec.samples_student:
            generated = sizes["public"] * (student.generation.max_new_tokens or new_tokens) * student.train.epochs
            work.decode(held, generated)
            if student.method == "minillm":  # teacher-mixed sampling queries the teacher at every step
                work.decode(_frozen_teacher(family), generated)
        return work
    if rule == "generate_teacher":
        teacher = _frozen_teacher(family)
        tokens = sizes["public"] * (family.teacher_generation.max_new_tokens or new_tokens)
        return Work([teacher], gpus=gpus).decode(teacher, tokens)
    base = _model_base(family, model, rule, wildcards)
    held = _frozen(family, base) if base is not None else Held(1e9)
    if rule == "score_reference" and wildcards.get("ref") == "external":
        held = _external(cfg)
    if rule in ("score_model", "score_reference"):
        examples = _eval_examples(cfg) + min(cfg.evaluation.population.max_examples, sizes["dev"])
        return Work([held], gpus=gpus).forward(held, examples * length)
    if rule == "mope":
        passes = cfg.attacks.mope.k + 1
        return Work([held], gpus=gpus).forward(held, passes * _eval_examples(cfg) * length)
    if rule == "per_block":
        blk = cfg.blocks
        passes = n_layers(family, base) * blk.k * len(blk.sigmas) + 1 if "mope" in blk.signals else 0
        if set(blk.signals) - {"mope"}:  # one hidden-state pass; its per-block logit lens ~ one more pass
            passes += 2
        examples = _eval_examples(cfg, (blk.max_members, blk.max_nonmembers))
        return Work([held], gpus=gpus).forward(held, passes * examples * length)
    if rule == "memorization":
        mem = cfg.memorization
        examples = _eval_examples(cfg, (mem.max_members, mem.max_nonmembers))
        work = Work([held], gpus=gpus).decode(held, examples * (mem.max_new_tokens or new_tokens))
        if cfg.data.source == "synthetic":  # canary exposure: only the synthetic records carry secrets
            work.forward(held, examples * mem.n_candidates * length)
        return work
    if rule == "utility":
        examples = min(cfg.utility.max_examples or math.inf, sizes["dev"])
        return Work([held], gpus=gpus).decode(held, examples * (cfg.utility.max_new_tokens or new_tokens))
    raise ValueError(f"no sizing for rule {rule!r}")


def _model_base(family, model: str | None, rule: str, wildcards: dict) -> str | None:
    if rule == "score_reference":
        return family.teacher.base
    if model in (None, "teacher"):
        return family.teacher.base
    return family.all_students()[model][0].base


def _external(cfg) -> Held:
    ext = cfg.attacks.external_reference
    if ext.family is not None:
        fam = cfg.families[ext.family]
        return _frozen(fam, ext.base)
    return Held(ext.n_params or 1e9, None, ext.dtype)


def plan_warnings(cfg) -> list[str]:
    """:func:`warnings` of every training and teacher-generation job of ``cfg`` (one seed suffices)."""
    out = []
    for name, family in cfg.families.items():
        wc = {"family": name, "seed": str(cfg.seeds[0])}
        jobs = [("train_teacher", wc)] + [("train_student", {**wc, "student": s}) for s in family.all_students()]
        jobs += [("per_block", {**wc, "model": "teacher"})] if cfg.blocks.enabled else []
        for rule, wildcards in jobs:
            label = f"families.{name}: {rule}" + (f" {wildcards['student']}" if "student" in wildcards else "")
            out += warnings(label, work_for(cfg, rule, wildcards), cfg.resources)
    return out


def population_warnings(cfg) -> list[str]:
    """RMIA's population against the smallest reported FPR: the dominated count of a population of ``N``
    takes ``N + 1`` values, so it resolves FPRs down to about ``1 / (N + 1)``; below that the ranking leans
    on the tie-break by ``LR(x)`` (:func:`kdprivacy.mia.attacks.rmia_score`). Empty when RMIA is not run or
    the population is large enough for the smallest FPR the non-members resolve. ``N`` =
    ``evaluation.population.max_examples`` capped by the pools' sizes (:func:`pool_sizes`)."""
    from kdprivacy.mia.metrics import resolvable

    sizes = pool_sizes(cfg)
    evaluation = cfg.evaluation
    nonmembers = int(min(sizes["nonmember"], evaluation.max_nonmembers or sizes["nonmember"]))
    reported = [f for f in cfg.attacks.fprs if resolvable(nonmembers, f)]
    if "rmia" not in cfg.attacks.names or not reported:
        return []
    population = evaluation.population
    n = int(min(population.max_examples, sum(sizes[pool] for pool in population.pools)))
    smallest = min(reported)
    needed = math.ceil(1 / smallest - 1 - 1e-9)
    if n >= needed:
        return []
    return [
        f"the population holds {n} examples (evaluation.population: pools {population.pools}, max_examples "
        f"{population.max_examples}): its dominated count resolves FPRs down to 1/{n + 1} = {1 / (n + 1):.3g} "
        f"only, above the smallest reported FPR {smallest:g} (attacks.fprs, resolved by {nonmembers} non-members), which needs >= {needed} examples; "
        f"RMIA's TPR there rests on the tie-break by the likelihood ratio"
    ]
