"""This run beside the paper: Zhang et al., *Membership and Memorization in LLM Knowledge Distillation*,
EMNLP 2025 (arXiv 2508.07054).

The paper's numbers (read off its figures) ship as package data, ``kdprivacy/resources/paper_results.csv``
(columns ``family, model, method, metric, attack, value``; see the README beside it). Two tables:

- :func:`compare`: our value beside the paper's for every cell a mapping says is the same experiment, with
  ``diff = ours - paper``. A cell of ours with no mapped paper cell gives **no row**; nothing is filled in.
- :func:`qualitative_claims`: the paper's qualitative claims (study "Headline numbers" and "Ablations"),
  each judged on this run through the rows of :func:`kdprivacy.reporting.claims.compute_findings`.

Mapping (ours -> paper). Models are mapped only through the configuration: ``mapping`` is
``{"families": {our_family: {"family": paper_family, "models": {our_base: paper_model}}}}`` where
``our_base`` is the name of a base in ``families.<family>.bases`` (the teacher's base included), e.g.
``{"families": {"gpt2": {"family": "gpt2", "models": {"teacher": "gpt2-xl", "large": "gpt2-large"}}}}``.
A family or base missing from the mapping has no paper counterpart. Methods and attacks use the fixed
tables below (overridable with ``mapping["methods"]`` / ``mapping["attacks"]``); ablation copies are never
compared. A method's paper name is its ``paper_name`` in the registry :data:`kdprivacy.kd.METHODS` (the
teacher is ``teacher`` in both); attacks:

=============  ==================  =============================================================
ours           paper               notes
=============  ==================  =============================================================
loss           loss
min_k          min_k               k = 20% in both
min_k_pp       min_k_pp
zlib           zlib
ref_external   ref_external        paper: StableLM-3B reference
ref_pretrained ref_pretrained      the teacher's pretrained base
mope           mope
ref_nokd       (none)              ours only: No-KD student as reference
rmia           (none)              ours only
=============  ==================  =============================================================

Metrics: ``mia.csv`` ``auc`` -> ``mia_auc`` (per attack); ``memorization.csv`` ``member_rate`` ->
``memorization_accuracy`` and ``gap`` -> ``memorization_gap`` (the paper's 32-token positional match; ours
uses ``memorization.first_k`` tokens); ``utility.csv`` ``rouge_l`` (category ``ALL``, x100) -> ``rouge_l``
(x100). Our values are pooled over seeds (:func:`kdprivacy.reporting.tidy.pool`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

import pandas as pd

from kdprivacy.kd import METHODS
from kdprivacy.mia.registry import PAPER_ATTACKS
from kdprivacy.reporting import tidy
from kdprivacy.reporting.verdicts import as_bool

PAPER = "Zhang et al., EMNLP 2025, arXiv 2508.07054"
METHOD_MAP: dict[str, str] = {
    "teacher": "teacher",
    **{name: spec.paper_name for name, spec in METHODS.items()},
}
"""Our method -> the paper's."""
ATTACK_MAP: dict[str, str] = dict(PAPER_ATTACKS)  # the attack registry's paper names
"""Our attack -> the paper's (from :data:`kdprivacy.mia.registry.ATTACKS`); ``ref_nokd`` and ``rmia`` have no
counterpart in the paper."""

COMPARISON_COLUMNS = [
    "family",
    "model",
    "base",
    "method",
    "metric",
    "attack",
    "ours",
    "ours_ci_low",
    "ours_ci_high",
    "n_seeds",
    "paper_family",
    "paper_model",
    "paper_method",
    "paper_attack",
    "paper",
    "diff",
    "paper_in_ci",
    "protocol",
]


def load_paper_results() -> pd.DataFrame:
    """The packaged ``paper_results.csv`` (``attack`` is empty for the non-MIA metrics)."""
    with (
        resources.files("kdprivacy")
        .joinpath("resources", "paper_results.csv")
        .open("r", encoding="utf-8") as f
    ):
        table = pd.read_csv(
            f, dtype={"family": str, "model": str, "method": str, "metric": str, "attack": str}
        )
    table["attack"] = table["attack"].astype(object).where(table["attack"].notna(), "")
    return table


def _paper_model(mapping: Mapping[str, Any], family: str, base: Any) -> tuple[str, str] | None:
    fam = (mapping.get("families") or {}).get(family)
    if not fam:
        return None
    model = (fam.get("models") or {}).get(str(base))
    if model is None:
        return None
    return str(fam.get("family", family)), str(model)


def _ours(
    mia: pd.DataFrame | None, memorization: pd.DataFrame | None, utility: pd.DataFrame | None
) -> pd.DataFrame:
    """Our pooled values in long form: family, model, base, method, metric, attack, ours, CI, n_seeds."""
    frames = []
    keys = ["family", "model", "base", "method"]

    def prep(table: pd.DataFrame) -> pd.DataFrame:
        table = tidy.main_rows(table)
        return table.assign(base=tidy.col(table, "base"), method=tidy.col(table, "method"))

    if mia is not None and not mia.empty:
        p = tidy.pool(prep(mia), [*keys, "attack"])
        frames.append(p.rename(columns={"auc": "ours"}).assign(metric="mia_auc"))
    if memorization is not None and not memorization.empty:
        m = prep(memorization)
        for ours, metric, lo, hi in (
            ("member_rate", "memorization_accuracy", "member_rate_ci_low", "member_rate_ci_high"),
            ("gap", "memorization_gap", "gap_ci_low", "gap_ci_high"),
        ):
            if ours in m.columns:
                p = tidy.pool(m, keys, ours, lo, hi)
                frames.append(p.rename(columns={ours: "ours"}).assign(metric=metric, attack=""))
    if utility is not None and not utility.empty:
        u = prep(utility)
        u = u[u["category"] == "ALL"] if "category" in u.columns else u
        if not u.empty:
            p = tidy.pool(u, keys, "rouge_l", "rouge_l_ci_low", "rouge_l_ci_high")
            frames.append(p.rename(columns={"rouge_l": "ours"}).assign(metric="rouge_l", attack=""))
    if not frames:
        return pd.DataFrame(columns=[*keys, "metric", "attack", "ours", "ci_low", "ci_high", "n_seeds"])
    return pd.concat(frames, ignore_index=True)


def mapping_from_names(
    bases: Mapping[str, Mapping[str, str | None]], paper: pd.DataFrame | None = None
) -> dict:
    """A mapping for :func:`compare` built from hub names: ``bases`` = ``{family: {base: name_or_path}}``;
    a base is mapped only when the last path component of its name *equals* a model of the paper
    (``openai-community/gpt2-large`` -> ``gpt2-large``, ``facebook/opt-1.3b`` -> ``opt-1.3b``). From-scratch
    bases (name None) and other models stay unmapped. For configs to turn into an explicit mapping."""
    paper = load_paper_results() if paper is None else paper
    known = dict(paper[["model", "family"]].drop_duplicates().itertuples(index=False, name=None))
    out: dict[str, dict] = {}
    for family, spec in bases.items():
        models = {}
        for base, name in spec.items():
            short = str(name).rstrip("/").rsplit("/", 1)[-1] if name else None
            if short in known:
                models[base] = short
        if models:
            families = {known[m] for m in models.values()}
            if len(families) != 1:
                raise ValueError(f"family {family}: bases map onto several paper families {sorted(families)}")
            out[family] = {"family": families.pop(), "models": models}
    return {"families": out}


def compare(
    mapping: Mapping[str, Any] | None,
    mia: pd.DataFrame | None = None,
    memorization: pd.DataFrame | None = None,
    utility: pd.DataFrame | None = None,
    paper: pd.DataFrame | None = None,
    protocol: str = "ours",
) -> pd.DataFrame:
    """Ours beside the paper for every mapped cell (module docstring); columns :data:`COMPARISON_COLUMNS`.

    ``protocol``: the config's ``protocol`` (``ours`` or ``paper``, :mod:`kdprivacy.config.protocol`) our
    numbers were made with, written on every row so a comparison says whether it is like for like.

    ``diff = ours - paper``; ``paper_in_ci``: whether the paper's value lies in our 95% interval (None when
    we have no interval). Unmapped families, bases, methods or attacks, and cells the paper does not
    report, give no row.
    """
    mapping = mapping or {}
    paper = load_paper_results() if paper is None else paper
    methods = {**METHOD_MAP, **(mapping.get("methods") or {})}
    attacks = {**ATTACK_MAP, **(mapping.get("attacks") or {})}
    index = {
        (r.family, r.model, r.method, r.metric, "" if pd.isna(r.attack) else str(r.attack)): float(r.value)
        for r in paper.itertuples(index=False)
    }
    rows = []
    for r in _ours(mia, memorization, utility).itertuples(index=False):
        target = _paper_model(mapping, r.family, r.base)
        method = methods.get(r.method)
        attack = attacks.get(r.attack) if r.metric == "mia_auc" else ""
        if target is None or method is None or attack is None:
            continue
        key = (target[0], target[1], method, r.metric, attack)
        if key not in index:
            continue
        value = index[key]
        lo, hi = float(r.ci_low), float(r.ci_high)
        inside = None if math.isnan(lo) or math.isnan(hi) else bool(lo <= value <= hi)
        rows.append(
            {
                "family": r.family,
                "model": r.model,
                "base": r.base,
                "method": r.method,
                "metric": r.metric,
                "attack": r.attack,
                "ours": r.ours,
                "ours_ci_low": lo,
                "ours_ci_high": hi,
                "n_seeds": r.n_seeds,
                "paper_family": key[0],
                "paper_model": key[1],
                "paper_method": method,
                "paper_attack": attack,
                "paper": value,
                "diff": float(r.ours) - value if not pd.isna(r.ours) else math.nan,
                "paper_in_ci": inside,
                "protocol": protocol,
            }
        )
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out["paper_in_ci"] = pd.Series([r["paper_in_ci"] for r in rows], index=out.index, dtype=object)
    return out


# ------------------------------------------------------------------------------------------ claims
PAPER_CLAIMS: list[dict[str, Any]] = [
    {
        "claim": "teachers_leak_most",
        "section": "Headline numbers",
        "paper_claim": "Teachers are highly exposed (AUC 0.86-0.98; GPT-2 MoPe 0.61), far above their "
        "students "
        "(0.50-0.83)",
        "findings": ["teacher_leaks_more_than_students"],
    },
    {
        "claim": "students_inherit_risk",
        "section": "Headline numbers",
        "paper_claim": "KD students inherit membership risk: their AUC is above the No-KD control's",
        "findings": ["kd_leaks_more_than_nokd"],
    },
    {
        "claim": "imitkd_seqkd_kd_leak_most",
        "section": "Headline numbers",
        "paper_claim": "Students leak most with ImitKD, SeqKD or KD",
        "findings": ["top_leakers_imitkd_seqkd_kd"],
    },
    {
        "claim": "minillm_leaks_least",
        "section": "Headline numbers",
        "paper_claim": "MiniLLM students leak least (AUC <= 0.60)",
        "findings": ["minillm_leaks_least"],
    },
    {
        "claim": "reference_attacks_strongest",
        "section": "Headline numbers",
        "paper_claim": "Reference-based attacks are the strongest",
        "findings": ["reference_attacks_strongest"],
    },
    {
        "claim": "larger_students_leak_more",
        "section": "Headline numbers",
        "paper_claim": "Larger students leak more (OPT ImitKD, best attack: 0.64 / 0.72 / 0.83 for "
        "125M / 350M / 1.3B)",
        "findings": ["larger_students_leak_more"],
    },
    {
        "claim": "nokd_at_chance",
        "section": "Headline numbers",
        "paper_claim": "No-KD students are at chance (AUC 0.50-0.51)",
        "findings": ["nokd_near_chance"],
    },
    {
        "claim": "small_memorization_gap",
        "section": "Headline numbers",
        "paper_claim": "Memorization accuracy is low (0.03-0.09) with member/non-member gaps <= 0.017",
        "findings": ["memorization_gap_positive"],
        "rule": "small_gap",
    },
    {
        "claim": "reverse_kl_lowers_risk",
        "section": "Ablations (Fig. 3)",
        "paper_claim": "Reverse-KL-style KD objectives lower MIA risk",
        "findings": ["reverse_kl_leaks_less"],
    },
    {
        "claim": "more_sgo_more_risk",
        "section": "Ablations (Fig. 4)",
        "paper_claim": "A larger proportion of student-generated outputs in training raises the risk",
        "findings": ["more_sgo_leaks_more"],
    },
    {
        "claim": "memorization_disagrees_with_membership",
        "section": "Ablations (Fig. 5)",
        "paper_claim": "Memorization and membership disagree across methods (DistiLLM memorizes most at a "
        "mid "
        "AUC; MiniLLM has the lowest AUC)",
        "findings": ["membership_memorization_disagree"],
    },
    {
        "claim": "distillm_memorizes_most",
        "section": "Ablations (Fig. 5)",
        "paper_claim": "DistiLLM students memorize most",
        "findings": ["distillm_memorizes_most"],
    },
    {
        "claim": "per_task_risk",
        "section": "Ablations (Fig. 6)",
        "paper_claim": "Creative writing, general QA and brainstorming are riskiest; classification, "
        "summarization "
        "and closed QA least risky",
        "findings": ["category_risk_order"],
    },
    {
        "claim": "per_block_risk_varies",
        "section": "Ablations (Fig. 7)",
        "paper_claim": "Privacy risk varies across transformer blocks by a large margin",
        "findings": ["block_risk_varies"],
        "summary_scope": "{family}/mope",  # the paper's Fig. 7 measured MoPe per block
    },
]
"""The paper's qualitative claims and the findings (:data:`kdprivacy.reporting.claims.CLAIMS`) that test
them."""

SMALL_GAP = 0.017
"""The paper's largest member/non-member memorization gap."""

CLAIM_COLUMNS = ["claim", "section", "paper_claim", "findings", "supported", "n_testable", "detail"]


def _small_gap(cells: pd.DataFrame) -> tuple[bool | None, int, str]:
    students = cells[~cells["scope"].str.endswith("/teacher")].dropna(subset=["value"])
    if students.empty:
        return None, 0, "no student memorization gap: not testable"
    largest = float(students["value"].abs().max())
    ok = largest <= SMALL_GAP
    return (
        ok,
        len(students),
        (
            f"largest |gap| over {len(students)} students {largest:.4f} "
            f"{'<=' if ok else '>'} {SMALL_GAP} (point estimates)"
        ),
    )


def qualitative_claims(table: pd.DataFrame) -> pd.DataFrame:
    """One row per :data:`PAPER_CLAIMS` entry judged on ``table``
    (:func:`kdprivacy.reporting.claims.compute_findings`).

    ``supported``: True when every testable family summary of the linked findings is supported, False when
    one is not, None when none is testable. ``detail`` quotes the summaries.
    """
    rows = []
    for spec in PAPER_CLAIMS:
        linked = table[table["claim"].isin(spec["findings"])]
        if spec.get("rule") == "small_gap":
            ok, n, detail = _small_gap(linked[linked["level"] == "cell"])
        else:
            summaries = linked[linked["level"] == "summary"]
            if "summary_scope" in spec:  # only the summaries of one kind (e.g. one per-block signal)
                wanted = {spec["summary_scope"].format(family=f) for f in linked["scope"].str.split("/").str[0]}
                summaries = summaries[summaries["scope"].isin(wanted)]
            summaries = summaries.assign(supported=[as_bool(v) for v in summaries["supported"]])
            testable = summaries[[v is not None for v in summaries["supported"]]]
            if testable.empty:
                ok, n = None, 0
                detail = "not testable in this run" + (
                    f" ({summaries['detail'].iloc[0]})" if not summaries.empty else " (no findings rows)"
                )
            else:
                verdicts = list(testable["supported"])
                ok, n = all(verdicts), len(testable)
                detail = "; ".join(
                    f"{r.scope}: {'supported' if r.supported else 'not supported'} - {r.detail}"
                    for r in testable.itertuples(index=False)
                )
        rows.append(
            {
                "claim": spec["claim"],
                "section": spec["section"],
                "paper_claim": spec["paper_claim"],
                "findings": ", ".join(spec["findings"]),
                "supported": ok,
                "n_testable": n,
                "detail": detail,
            }
        )
    out = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    out["supported"] = out["supported"].astype(object).where(out["supported"].notna(), None)
    return out
