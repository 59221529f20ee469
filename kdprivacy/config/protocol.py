"""``protocol: paper``: one switch that gives every knob where our default deviates from the authors' code
(Zhang et al. 2025, built on DistiLLM / LMOps / TRL) the value the authors ran.

Each deviation is one :class:`Deviation` row below: where the knob sits in the config, the paper's value,
ours (for the README table), and why ours differs. With ``protocol: paper`` a knob the user did not set takes
the paper's value; a knob the user set keeps the user's value (an explicit setting always wins), so the
switch moves defaults only and a deviation can be tried one at a time under either protocol.

Paths are dotted config keys; ``*`` stands for every key of a mapping (every family, every student). ``when``
restricts a row to the nodes along its path that have the given attribute values (the nearest node on the
path that has the attribute decides), e.g. ``{"method": "gkd"}`` for GKD students only or ``{"objective":
"jsd"}`` for a ``kd`` block whose objective is JSD. The protocol is applied by
:func:`kdprivacy.config.validate_config` in two passes: validate, find the unset knobs the rows reach, set them
in the raw config and validate again (so every paper value passes the same checks as a user's).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

PROTOCOLS = ("ours", "paper")
ProtocolName = Literal["ours", "paper"]


@dataclass(frozen=True)
class Deviation:
    path: str
    paper: Any
    ours: str
    reason: str
    when: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- training (KD methods)
TRAINING_DEVIATIONS: list[Deviation] = [
    Deviation(
        "families.*.students.*.kd.beta", 0.1, "0.5 (symmetric JSD)",
        "DistiLLM's js_distance hard-codes lambda 0.9, i.e. generalized-JSD beta 0.1 in TRL's convention; we "
        "use the symmetric JSD unless beta is set",
        when={"objective": "jsd"},
    ),
    Deviation(
        "families.*.students.*.seqkd.loss", "kd", "ce (Kim & Rush: cross-entropy on the teacher's outputs)",
        "the authors ran SeqKD with `--type kd`, forward KL to the teacher on its own generations; SeqKD as "
        "defined is plain SFT on them",
        when={"method": "seqkd"},
    ),
    Deviation(
        "families.*.students.*.minillm.gamma", 0.95, "1.0 (no discount: the paper's R_{t+1})",
        "the LMOps MiniLLM code discounts the long-term reward with gamma 0.95 (then divides by the remaining "
        "length); the MiniLLM paper's formula sums the future rewards undiscounted",
        when={"method": "minillm"},
    ),
    *[
        Deviation(
            f"families.*.students.*.{method}.pretrain_weight", 1.0, "0 (no pretraining LM loss)",
            "the authors' code (DistiLLM's finetune.py / LMOps MiniLLM, lm_coef 1) adds an LM loss on a batch of "
            "the pretraining corpus at every step (kdprivacy/kd/pretrain.py: our pretrain pool); we train on "
            "the public pool alone, so that the students' data is exactly what the study names",
            when={"method": method},
        )
        for method in ("imitkd", "distillm", "minillm")
    ],
    Deviation(
        "families.*.students.*.minillm.pretrain_kd_ratio", 0.5, "0 (the pretraining loss, when on, is CE only)",
        "LMOps MiniLLM's pt_loss is 0.5 CE + 0.5 forward KL to the teacher on the pretraining batch (kd_ratio "
        "0.5)",
        when={"method": "minillm"},
    ),
    Deviation(
        "families.*.students.*.minillm.lm_weight", 0.0, "1.0 (CE on the public batch: the paper's L_PT)",
        "LMOps MiniLLM has no cross-entropy on the instruction batch: its L_PT is the pretraining loss above; "
        "ours is the public ground truth's CE (the MiniLLM paper's L_PT on the SFT data)",
        when={"method": "minillm"},
    ),
    Deviation(
        "families.*.students.*.gkd.temperature_in_loss", False, "true (kd.temperature divides both logits)",
        "TRL's GKDTrainer uses its temperature for sampling only and takes the generalized JSD at temperature 1; "
        "we apply kd.temperature in the loss as for every other divergence (the same at the default 1.0)",
        when={"method": "gkd"},
    ),
]


# ---------------------------------------------------------------------------- evaluation (attacks, memorization, utility)
EVALUATION_DEVIATIONS: list[Deviation] = [
    Deviation(
        "attacks.min_k_count", "floor", "ceil(k n)",
        "MIMIR (the authors' attack code) averages int(k n) tokens, floor; we take ceil so that k = 0.2 of a "
        "4-token response is 1 token, not 0 (under floor we keep at least 1: MIMIR's mean of none is NaN)",
    ),
    Deviation(
        "utility.rouge_stemmer", True, "false (exact tokens)",
        "the authors' ROUGE-L uses rouge-score's Porter stemmer; we compare tokens as generated",
    ),
    Deviation(
        "memorization.inheritance_comparison", ">", "`>=` (a value at the threshold is memorized)",
        "the authors' inheritance counts a teacher/student as memorizing an example when its match rate is "
        "strictly above the threshold; we count the threshold itself (so 0.5 of 32 positions, 16 matches, is "
        "memorized at 0.5)",
    ),
    Deviation(
        "memorization.match_positions", "fixed", "reference: min(first_k, reference length), EOS counted",
        "the authors divide the matches by a fixed 32 positions, so the positions past a shorter reference "
        "(padding) are misses; we compare only the reference's own positions (a 10-token reference "
        "reproduced whole is 10/10, theirs 10/32)",
    ),
    Deviation(
        "utility.do_sample", True, "false (greedy)",
        "the authors' ROUGE-L evaluation samples the responses (top_k 0, top_p 1, temperature 1: "
        "utility.top_k/top_p/temperature, seeded by utility.seed); we decode greedily, deterministic and "
        "seed-free",
    ),
    Deviation(
        "evaluation.score_eos", False, "true (the final EOS is a scored token)",
        "MIMIR scores the response text without EOS (loss, Min-K%, Min-K%++, references, MoPe); we score "
        "EOS too, since when a model stops is part of what it learned",
    ),
]


DEVIATIONS: list[Deviation] = TRAINING_DEVIATIONS + EVALUATION_DEVIATIONS


def _walk(node: Any, parts: list[str], chain: list[Any], where: tuple[str, ...]):
    """Yield ``(concrete path, owner, leaf key, chain of nodes from the root to the owner)``."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
        children = [(k, node[k]) for k in keys]
    elif isinstance(node, BaseModel):
        if head == "*" or head not in type(node).model_fields:
            raise ValueError(f"protocol path {'.'.join(where + (head,))}: no such config key")
        children = [(head, getattr(node, head))]
    else:
        return
    if not rest:
        if isinstance(node, BaseModel):
            yield where + (head,), node, head, chain + [node]
        return
    for key, child in children:
        if child is not None:
            yield from _walk(child, rest, chain + [node], where + (key,))


def _applies(row: Deviation, chain: list[Any]) -> bool:
    for attr, wanted in row.when.items():
        holders = [n for n in reversed(chain) if isinstance(n, BaseModel) and attr in type(n).model_fields]
        if not holders or getattr(holders[0], attr) != wanted:
            return False
    return True


def _set(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = raw
    for key in path[:-1]:
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        node = nxt
    node[path[-1]] = copy.deepcopy(value)


def paper_overrides(cfg: BaseModel, rows: list[Deviation] | None = None) -> dict[tuple[str, ...], Any]:
    """The knobs ``rows`` (default: every deviation) reach in the validated ``cfg`` that the user left unset:
    ``{concrete path: paper value}``."""
    out: dict[tuple[str, ...], Any] = {}
    for row in DEVIATIONS if rows is None else rows:
        for path, owner, key, chain in _walk(cfg, row.path.split("."), [], ()):
            if key not in owner.model_fields_set and _applies(row, chain):
                out[path] = row.paper
    return out


def with_paper_values(raw: dict[str, Any], cfg: BaseModel) -> dict[str, Any]:
    """A copy of ``raw`` with every unset knob a deviation reaches set to the paper's value."""
    out = copy.deepcopy(raw)
    for path, value in paper_overrides(cfg).items():
        _set(out, path, value)
    return out


def deviation_table() -> list[dict[str, str]]:
    """The README table: one row per deviation (``path``, ``paper``, ``ours``, ``reason``)."""
    return [
        {"path": r.path + (f" ({', '.join(f'{k}={v}' for k, v in r.when.items())})" if r.when else ""),
         "paper": repr(r.paper), "ours": r.ours, "reason": r.reason}
        for r in DEVIATIONS
    ]


def markdown_table() -> str:
    """README's 'Protocols' table (``python -m kdprivacy.config protocols`` prints it; a test keeps them equal)."""
    lines = ["| knob | `protocol: paper` | ours (default) | why ours differs |", "| --- | --- | --- | --- |"]
    for row in deviation_table():
        cells = [f"`{row['path']}`", f"`{row['paper']}`", row["ours"], row["reason"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
