"""The SeqKD data: the teacher's answers to every **public** prompt (one parquet artifact per family and
seed, ``id, prompt_ids, response_ids, response_text``), how it is generated, written and read back, and the
``generate_teacher`` job (:func:`teacher_generations_job`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import pandas as pd

from kdprivacy.encoding import Encoded

GENERATION_COLUMNS = ["id", "prompt_ids", "response_ids", "response_text"]


def generations_frame(items: Sequence[Encoded], tokenizer=None) -> pd.DataFrame:
    """The SeqKD artifact: one row per prompt (``id, prompt_ids, response_ids, response_text``)."""
    rows = [
        {
            "id": item.id,
            "prompt_ids": list(item.prompt_ids),
            "response_ids": list(item.response_ids),
            "response_text": tokenizer.decode(list(item.response_ids), skip_special_tokens=True) if tokenizer else "",
        }
        for item in items
    ]
    return pd.DataFrame(rows, columns=GENERATION_COLUMNS)


def read_generations(path) -> list[Encoded]:
    """Teacher generations (parquet written by :func:`generations_frame`) as ``Encoded`` items."""
    frame = pd.read_parquet(path)
    missing = sorted(set(GENERATION_COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(f"{path}: teacher generations lack columns {missing}")
    return [
        Encoded(str(r.id), tuple(int(t) for t in r.prompt_ids), tuple(int(t) for t in r.response_ids))
        for r in frame.itertuples(index=False)
    ]


def fraction_differing(generated: Sequence[Encoded], ground_truth: Sequence[Encoded]) -> float:
    """Fraction of ``generated`` items whose response differs from the ground truth of the same id."""
    truth = {item.id: item.response_ids for item in ground_truth}
    missing = [item.id for item in generated if item.id not in truth]
    if missing:
        raise ValueError(f"{len(missing)} generated items have no ground truth, e.g. {missing[:3]}")
    if not generated:
        return math.nan
    return sum(item.response_ids != truth[item.id] for item in generated) / len(generated)


def generate_teacher(run, manifest_path, log=None) -> tuple[pd.DataFrame, dict]:
    """SeqKD data: the teacher (``run.teacher``) answers every **public** prompt (asserted).

    ``run``: :class:`kdprivacy.train.runs.TeacherGenerationRun` (``generation`` default: pure sampling at
    temperature 1, as the DistiLLM/MiniLLM SeqKD scripts; batch size 32 unless set). Returns the frame and a
    summary (counts, mean length, EOS rate, resolved generation settings) for provenance.
    """
    from kdprivacy import generation, models
    from kdprivacy.encoding import encode_frame
    from kdprivacy.kd.sampling import eos_id_of
    from kdprivacy.train.pools import pool_guard, read_manifest, select_pools
    from kdprivacy.train.runs import resolved_generation

    teacher, tokenizer = models.load_base(run.teacher)
    manifest = read_manifest(manifest_path)
    guard = pool_guard(manifest, ("public",), "teacher-generation prompts")
    frame = select_pools(manifest, ["public"])
    items = encode_frame(tokenizer, frame, int(run.max_length), int(run.max_prompt_length))
    guard([item.id for item in items])
    gen = resolved_generation(run.generation, int(run.max_length), int(run.max_prompt_length), 32)
    eos = eos_id_of(teacher, tokenizer.eos_token_id)
    (log or logging.getLogger("kdprivacy")).info(
        "generating teacher outputs for %d public prompts: %s", len(items), gen.model_dump())
    tokens = generation.generate(
        teacher, items, gen.max_new_tokens, gen.batch_size, tokenizer.pad_token_id, eos,
        generation.Sampling.of(gen, int(run.seed)),
    )
    generated = generation.with_responses(items, tokens, int(run.max_length))
    guard([item.id for item in generated])
    out = generations_frame(generated, tokenizer)
    summary = {
        "n": len(generated),
        "mean_response_tokens": float(sum(len(i.response_ids) for i in generated) / max(len(generated), 1)),
        "eos_rate": float(sum(bool(i.response_ids) and i.response_ids[-1] == eos for i in generated)
                          / max(len(generated), 1)),
        "frac_differs_from_gt": fraction_differing(generated, items),
        "generation": gen.model_dump(mode="json"),
        "pools": ["public"],
    }
    return out, summary


def teacher_generations_job(job) -> None:
    """The ``generate_teacher`` job (``job``: a :class:`kdprivacy.runtime.Job`): ``job.cfg`` validated into
    :class:`kdprivacy.train.runs.TeacherGenerationRun`, every RNG seeded from its ``seed``, the generations
    (:func:`generate_teacher`) written to the ``generations`` output and their provenance (cfg, code and the
    summary) to ``<generations>.provenance.json`` next to it."""
    from pathlib import Path

    from kdprivacy import io
    from kdprivacy.train.runs import TeacherGenerationRun

    run = TeacherGenerationRun.model_validate(job.params)
    job.seed(run.seed)
    frame, summary = generate_teacher(run, job.input.manifest, job.log)
    out = Path(job.output.generations)
    io.write_parquet(frame, out)
    job.write_provenance(out.with_name(out.name + ".provenance.json"), summary=summary)
    job.log.info("wrote %d teacher generations to %s (%s)", len(frame), out, summary)
