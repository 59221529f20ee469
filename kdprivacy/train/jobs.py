"""The workflow's training jobs: the shared body of every training script (:func:`run_job`: data-parallel
relaunch, seeds, resume directory, atomic output) and one entry point per job (tokenizer, base pretraining,
teacher SFT, student KD), each taking its validated :mod:`kdprivacy.train.runs` model (the tokenizer job,
:func:`train_tokenizer_job`, takes the script's :class:`kdprivacy.runtime.Job`).

Guarantees (asserted, pitfalls.md): a student reads public/dev examples only, every student-generated batch
and every teacher generation has a **public** id, and no tokenizer/base pretraining reads a secret pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from kdprivacy import checkpoint
from kdprivacy.config import Lora, TokenizerTrain
from kdprivacy.encoding import encode_frame
from kdprivacy.kd import METHODS, train_method
from kdprivacy.train import distributed
from kdprivacy.train.loop import sft
from kdprivacy.train.pools import (
    assert_student_pools,
    load_items,
    pool_guard,
    pool_texts,
    read_manifest,
    refuse_secret_pools,
    select_pools,
)
from kdprivacy.train.runs import PretrainRun, StudentRun, TeacherRun


def save_trained(out_dir, model, tokenizer, history: pd.DataFrame | None = None) -> None:
    from kdprivacy import io, models

    models.save_model(model, tokenizer, out_dir)
    if history is not None:
        io.write_csv(history, Path(out_dir) / "train_log.csv")


def run_job(snakemake, script, log: logging.Logger, schema: type, train: Callable,
            fingerprint_extra: Sequence = ()) -> None:
    """The body every training script shares (``pretrain_base``, ``train_teacher``, ``train_student``).

    With more than one GPU for the job (:func:`~kdprivacy.train.distributed.data_parallel_size`) it relaunches
    ``script`` as data-parallel ranks through ``torchrun``; otherwise (or inside a rank) it validates
    ``params.cfg`` into ``schema`` (a :mod:`kdprivacy.train.runs` model), pins threads, seeds from its
    ``seed``, opens the resume directory (``params.resume_dir``, default ``<output.dir>.resume``)
    fingerprinted by ``params.cfg``, the code version and ``fingerprint_extra``, calls ``train(run, resume) ->
    (model, tokenizer, history)``, and on the main process writes ``output.dir`` atomically (model,
    ``train_log.csv``, ``provenance.json``) and clears the resume directory.
    """
    from kdprivacy import io, provenance, runtime

    nproc = distributed.data_parallel_size(snakemake)
    if nproc > 1:
        distributed.launch_data_parallel(snakemake, script, nproc, log)
        return
    cfg, code = snakemake.params.cfg, snakemake.params.code
    run = schema.model_validate(cfg)
    runtime.set_threads(distributed.worker_threads(snakemake.threads))
    runtime.seed_everything(run.seed)
    resume_dir = getattr(snakemake.params, "resume_dir", None) or checkpoint.resume_dir_for(snakemake.output.dir)
    resume = checkpoint.Resume(resume_dir, checkpoint.fingerprint(cfg, code, *fingerprint_extra))
    model, tokenizer, history = train(run, resume)
    if distributed.is_main_process():
        with io.atomic_dir(snakemake.output.dir) as tmp:
            save_trained(tmp, model, tokenizer, history)
            provenance.write(
                tmp / "provenance.json",
                params={"cfg": cfg, "code": code},
                inputs=dict(snakemake.input.items()),
                rule=snakemake.rule,
            )
        checkpoint.clear(resume_dir)
    distributed.finish_distributed()


def train_tokenizer_from_cfg(cfg: TokenizerTrain, manifest_path):
    from kdprivacy import models

    return models.train_tokenizer(pool_texts(manifest_path, cfg.pools), cfg.vocab_size, cfg.min_frequency)


def train_tokenizer_job(job) -> None:
    """The ``train_tokenizer`` job (``job``: a :class:`kdprivacy.runtime.Job`): a byte-level BPE tokenizer on
    the pools of ``job.cfg`` (a :class:`kdprivacy.config.TokenizerTrain`; never a secret pool), saved with its
    ``provenance.json`` into the ``dir`` output atomically."""
    from kdprivacy import io

    tokenizer = train_tokenizer_from_cfg(TokenizerTrain.model_validate(job.params), job.input.manifest)
    job.log.info("tokenizer: %d tokens from pools %s", len(tokenizer), job.params["pools"])
    with io.atomic_dir(job.output.dir) as tmp:
        tokenizer.save_pretrained(tmp)
        job.write_provenance(tmp / "provenance.json")


def pretrain_from_cfg(run: PretrainRun, manifest_path, tokenizer_dir, log=None,
                      resume: checkpoint.Resume | None = None, on_step=None):
    """Build ``run.spec`` from scratch and train it on all tokens of ``run.pools`` (0 epochs = random init).
    The model trains on :func:`kdprivacy.models.default_device`; ``resume``, ``on_step``: see
    :func:`kdprivacy.train.loop.fit`."""
    from kdprivacy import models

    refuse_secret_pools(run.pools, "base pretraining")
    tokenizer = models.load_tokenizer(str(tokenizer_dir))
    items = load_items(manifest_path, run.pools, tokenizer, run.max_length, run.max_prompt_length)
    model = models.build_from_scratch(run.spec, tokenizer, run.max_length, run.seed)
    model = model.to(models.default_device())
    model, history = sft(model, items, None, run.train, tokenizer.pad_token_id, log, on="all", desc="pretrain",
                         seed=run.seed, resume=resume, on_step=on_step)
    return model, tokenizer, history


def load_trainable(ref: dict, lora: Lora | None, seed: int, what: str):
    """``(model, tokenizer)`` to train: the model ref loaded with **float32** weights whatever its storage
    ``dtype`` (the master weights AdamW updates; ``train.precision`` sets the compute; the ref's own
    ``quantization`` is refused), wrapped for LoRA when ``lora`` is a block
    (:func:`kdprivacy.models.apply_lora`). QLoRA (``lora.quantization``): the base is loaded quantized
    (4-bit NF4 computing in bfloat16 on CUDA / float32 on CPU, or LLM.int8) and only the adapter trains;
    :func:`finish_trained` merges it into the base reloaded in full precision."""
    from kdprivacy import models

    models.refuse_quantized(ref, what)
    quantization = lora.quantization if lora is not None else None
    model, tokenizer = models.load_base({**ref, "dtype": "float32", "quantization": quantization},
                                        compute_dtype="auto" if quantization else None)
    return models.apply_lora(model, lora, seed=seed), tokenizer


def finish_trained(model, ref: dict):
    """The trained model as it is saved: a LoRA adapter merged (a QLoRA one into ``ref`` reloaded
    unquantized, :func:`kdprivacy.models.merge_lora`), then cast to ``ref``'s storage ``dtype`` (a bfloat16
    base gives a bfloat16 checkpoint; float32 refs are left untouched)."""
    from kdprivacy import models

    return models.to_dtype(models.merge_lora(model, base_ref=ref), ref.get("dtype"))


def train_teacher_from_cfg(run: TeacherRun, manifest_path, log=None, resume: checkpoint.Resume | None = None,
                           on_step=None):
    """SFT of ``run.base`` on the private pool (the members), dev pool for dev loss.

    ``run.lora`` (None = full fine-tuning): the returned model is then merged
    (:func:`kdprivacy.models.merge_lora`). Training runs on float32 weights; the returned model is in the base
    ref's ``dtype`` (:func:`finish_trained`). ``resume``, ``on_step``: see :func:`kdprivacy.train.loop.fit`.
    """
    model, tokenizer = load_trainable(run.base, run.lora, int(run.seed), "the teacher base")

    def encode(pool):
        return load_items(manifest_path, [pool], tokenizer, run.max_length, run.max_prompt_length)

    train, dev = encode("private"), encode("dev")
    model, history = sft(model, train, dev, run.train, tokenizer.pad_token_id, log, desc="teacher", seed=run.seed,
                         resume=resume, on_step=on_step)
    return finish_trained(model, run.base), tokenizer, history


def train_student_from_cfg(run: StudentRun, manifest_path, log=None, teacher_generations_path=None,
                           resume: checkpoint.Resume | None = None, on_step=None):
    """A student trained with ``run.method`` (:mod:`kdprivacy.kd`) on the public pool, dev pool for dev loss.
    Returns ``(model, tokenizer, history)``.

    ``teacher_generations_path``: the SeqKD artifact of ``scripts/generate_teacher.py`` (seqkd only).
    ``run.lora`` (None = full fine-tuning): the returned student is merged, in the base ref's ``dtype``
    (:func:`finish_trained`). The teacher ref may carry ``quantization`` (``"8bit"``/``"4bit"``): the frozen
    teacher is loaded quantized. ``resume``: checkpoint/resume (:func:`kdprivacy.train.loop.fit`), including
    the method's own state; ``on_step``: as there.

    Guarantee (asserted, pitfalls.md): the student reads public/dev examples only; every student-generated
    batch and every teacher generation has a **public** id.
    """
    from kdprivacy import models
    from kdprivacy.kd.generations import read_generations

    method = run.method
    if (method == "seqkd") != (teacher_generations_path is not None):
        raise ValueError(
            "teacher generations are needed by seqkd and only by seqkd "
            f"(method {method!r}, generations {teacher_generations_path!r})"
        )
    model, tokenizer = load_trainable(run.base, run.lora, int(run.seed), "the student base")
    manifest = read_manifest(manifest_path)
    pools = {"train": "public", "dev": "dev"}
    assert_student_pools(manifest, [], pools=pools.values())

    def encode(pool):
        return encode_frame(tokenizer, select_pools(manifest, [pool]), run.max_length, run.max_prompt_length)

    train, dev = encode(pools["train"]), encode(pools["dev"])
    from kdprivacy.kd import wants_pretrain_loss

    pretrain_items = None
    if wants_pretrain_loss(run.params):  # the authors' pretraining LM loss
        assert_student_pools(manifest, [], pools=["pretrain"])
        pretrain_items = encode("pretrain")
    assert_student_pools(manifest, [item.id for item in (*train, *dev, *(pretrain_items or []))])
    generated_guard = pool_guard(manifest, [pools["train"]], f"{method} generated training data")
    teacher_generations = None
    if teacher_generations_path is not None:
        teacher_generations = read_generations(teacher_generations_path)
        pool_guard(manifest, [pools["train"]], "teacher generations")([item.id for item in teacher_generations])
    teacher = None
    if METHODS[method].needs_teacher(run.params):
        if not run.teacher:
            raise ValueError(f"method {method!r} needs a teacher")
        teacher, teacher_tokenizer = models.load_base(run.teacher)
        models.assert_same_vocabulary(teacher_tokenizer, tokenizer)
    model, history = train_method(model, teacher, train, dev, run, tokenizer.pad_token_id, log, teacher_generations,
                                  eos_id=tokenizer.eos_token_id, guard=generated_guard, resume=resume,
                                  on_step=on_step, pretrain_items=pretrain_items)
    return finish_trained(model, run.base), tokenizer, history
