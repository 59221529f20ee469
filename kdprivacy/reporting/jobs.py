"""The reporting jobs whose glue is more than one call: each takes a :class:`kdprivacy.runtime.Job`, reads
its named inputs, writes its outputs and logs what it found (``scripts/findings.py``,
``scripts/paper_comparison.py``, ``scripts/summary.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdprivacy.reporting import claims, paper
from kdprivacy.reporting import summary as summary_page


def findings(job: Any) -> None:
    """The study's claims on this run's tables (:func:`kdprivacy.reporting.claims.compute_findings`);
    output ``findings``; each summary row logged."""
    cfg, table = job.cfg, job.optional_table
    result = claims.compute_findings(
        table("mia"),
        paired=table("mia_paired"),
        memorization=table("memorization"),
        blind=table("blind_baseline"),
        category=table("mia_category"),
        blocks=table("blocks"),
        blocks_spread=table("blocks_spread"),
        sizes=cfg["base_sizes"],
        sources=cfg["sources"],
        attacks=cfg["attacks"],
    )
    job.save(findings=result)
    for r in result[result["level"] == "summary"].itertuples(index=False):
        job.log.info("%s [%s]: %s", r.claim, r.scope, r.detail)


def paper_comparison(job: Any) -> None:
    """Outputs ``comparison`` (:func:`kdprivacy.reporting.paper.compare`) and ``claims``
    (:func:`kdprivacy.reporting.paper.qualitative_claims` of the ``findings`` input)."""
    table = job.optional_table
    comparison = paper.compare(
        job.cfg["paper"], table("mia"), table("memorization"), table("utility"), protocol=job.cfg["protocol"]
    )
    job.save(comparison=comparison)
    job.log.info("%d of our cells matched a cell of the paper (protocol %s)", len(comparison), job.cfg["protocol"])
    qualitative = paper.qualitative_claims(table("findings"))
    job.save(claims=qualitative)
    for r in qualitative.itertuples(index=False):
        job.log.info("%s: %s", r.claim, r.supported)


def _as_list(value: Any) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def summary(job: Any) -> None:
    """Output ``summary`` (:func:`kdprivacy.reporting.summary.render_summary`): the ``findings``,
    ``claims``, ``comparison`` tables and every path of the ``tables`` / ``figures`` inputs linked by stem."""
    inputs, table = job.inputs, job.optional_table
    output = job.output.summary
    tables = {name: inputs[name] for name in ("findings", "claims", "comparison") if name in inputs}
    for path in _as_list(inputs.get("tables")):
        tables.setdefault(Path(path).stem, path)
    figures = {Path(p).stem: p for p in _as_list(inputs.get("figures"))}
    text = summary_page.render_summary(
        output,
        table("findings"),
        tables,
        figures,
        config_name=job.cfg["config_name"],
        config_hash=summary_page.config_digest(job.snakemake.config),
        claims=table("claims"),
        comparison=table("comparison"),
        mia=table("mia"),
        best_attack=table("mia_best_attack"),
    )
    job.save(summary=text)
    job.log.info("summary: %d tables, %d figures linked", len(tables), len(figures))
