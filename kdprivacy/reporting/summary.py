"""``results/summary.md``: the one-page Markdown summary of a run, built only from its tables.

Headline AUC ranges per family with the highest held-out best-attack AUC
(:mod:`kdprivacy.reporting.best_attack`), one line per claim and family (:mod:`kdprivacy.reporting.claims`),
the paper's claims and the side-by-side comparison (:mod:`kdprivacy.reporting.paper`), then links to every
figure, table and provenance record.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from kdprivacy.kd import KD_METHODS
from kdprivacy.reporting.claims import CLAIMS
from kdprivacy.reporting.tidy import col, pool
from kdprivacy.reporting.verdicts import as_bool


def _link(path: str, start: str) -> str:
    return os.path.relpath(path, start=start).replace(os.sep, "/")


def _md_cell(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = list(columns or frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in frame[columns].iterrows():
        lines.append("| " + " | ".join(_md_cell(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def _verdict(x: Any) -> str:
    b = as_bool(x)
    return "not testable" if b is None else ("supported" if b else "not supported")


def _groups(table: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    role, method = col(table, "role"), col(table, "method")
    return [
        ("teacher", role == "teacher"),
        ("No-KD students", method == "nokd"),
        ("KD students", method.isin(KD_METHODS)),
    ]


def headline(
    mia: pd.DataFrame, best_attack: pd.DataFrame | None, tables: Mapping[str, str], start: str
) -> list[str]:
    """The "Headline numbers" section: per family and group (teacher, No-KD, KD students) the range of the
    seed-pooled AUCs over every model x attack, and the highest risk. With ``best_attack``
    (``mia_best_attack.csv``): the model with the highest held-out best-attack AUC (attack chosen on one half
    of the examples, AUC and CI on the other). Without it: the highest cell, marked as the maximum over the
    attacks on the same examples, biased upward."""
    out = ["## Headline numbers", ""]
    pooled = pool(
        mia.assign(base=col(mia, "base"), ablation=col(mia, "ablation")),
        ["family", "role", "method", "model", "ablation", "attack"],
    )
    main = pooled[pooled["ablation"].isna()]
    held = None
    if best_attack is not None and not best_attack.empty:
        held = best_attack[col(best_attack, "ablation").isna()].dropna(subset=["auc"])
    for family, g in main.groupby("family", sort=False):
        fam_held = None if held is None else held[held["family"] == family]
        bits = []
        held_groups = {} if fam_held is None else dict(_groups(fam_held))
        for label, in_group in _groups(g):
            part = g[in_group].dropna(subset=["auc"])
            if part.empty:
                continue
            n_attacks = part["attack"].nunique()
            text = (
                f"{label} AUC {part['auc'].min():.3f}-{part['auc'].max():.3f} over {n_attacks} "
                f"attack{'s' if n_attacks != 1 else ''}"
            )
            picked = fam_held[held_groups[label]] if label in held_groups else None
            if picked is not None and not picked.empty:
                top = picked.loc[picked["auc"].idxmax()]
                text += (
                    f"; held-out best attack {top['auc']:.3f} [{top['ci_low']:.3f}, {top['ci_high']:.3f}] "
                    f"({top['model']} on {top['best_attack']})"
                )
            else:
                best = part.loc[part["auc"].idxmax()]
                text += (
                    f" (highest: {best['model']} on {best['attack']}; the max over {n_attacks} attacks, "
                    "biased upward: selected and reported on the same examples)"
                )
            bits.append(text)
        n_seeds = int(main["n_seeds"].max()) if len(main) else 0
        out.append(f"- **{family}** ({n_seeds} seed{'s' if n_seeds != 1 else ''}): " + "; ".join(bits) + ".")
    out.append("")
    if held is not None:
        seeds = sorted({int(x) for x in col(held, "split_seed").dropna()})
        where = (
            f"[mia_best_attack]({_link(tables['mia_best_attack'], start)})"
            if "mia_best_attack" in tables
            else "`mia_best_attack.csv`"
        )
        out += [
            "AUC ranges: every model x attack on all evaluated examples. Held-out best attack: per model, "
            "the attack with the highest AUC on a selection half of the examples (stratified by membership, "
            f"chosen by a hash of the example id and split seed {', '.join(map(str, seeds)) or '?'}), its "
            f"AUC and 95% CI on the other half; the model where it is highest is named ({where}). The max "
            "AUC over the attacks on the same examples would be biased upward.",
            "",
        ]
    return out


def render_summary(
    summary_path: str | os.PathLike,
    findings: pd.DataFrame,
    tables: Mapping[str, str],
    figures: Mapping[str, str],
    config_name: str,
    config_hash: str,
    claims: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    mia: pd.DataFrame | None = None,
    provenance: Sequence[str] = (),
    title: str = "kdprivacy results",
    best_attack: pd.DataFrame | None = None,
) -> str:
    """The one-page Markdown summary (built only from the tables given).

    ``tables`` / ``figures``: name -> path (linked relative to ``summary_path``'s folder). ``findings``:
    :func:`kdprivacy.reporting.claims.compute_findings`; ``claims`` / ``comparison``:
    :mod:`kdprivacy.reporting.paper` tables (optional);
    ``mia``: ``mia.csv`` for the headline AUC ranges; ``best_attack``: ``mia_best_attack.csv`` (the
    held-out best attack, :mod:`kdprivacy.reporting.best_attack`) for the headline's highest risk.
    ``provenance``: paths to point at.
    """
    start = os.path.dirname(os.path.abspath(summary_path))
    out = [
        f"# {title}",
        "",
        f"Config **{config_name}** (hash `{config_hash}`). Every number below is read from the tables linked "
        "here; nothing is typed in by hand.",
        "",
    ]
    if mia is not None and not mia.empty:
        out += headline(mia, best_attack, tables, start)
    summary_rows = findings[findings["level"] == "summary"]
    if not summary_rows.empty:
        out += [
            "## Findings",
            "",
            "One line per claim and family: whether this run supports it (95% intervals; "
            "rules in `kdprivacy/reporting/claims.py`). Cell-level numbers: "
            + (
                f"[findings]({_link(tables['findings'], start)})."
                if "findings" in tables
                else "the findings table."
            ),
            "",
        ]
        lines = []
        for r in summary_rows.itertuples(index=False):
            lines.append(
                {
                    "claim": r.claim,
                    "scope": r.scope,
                    "verdict": _verdict(r.supported),
                    "what": CLAIMS.get(r.claim, ""),
                    "evidence": r.detail,
                }
            )
        out += [markdown_table(pd.DataFrame(lines)), ""]
        ranking = findings[findings["claim"] == "kd_method_ranking"]
        if not ranking.empty:
            out += ["### KD methods ranked by AUC (paired difference vs No-KD)", ""]
            out += [f"- `{r.scope}`: {r.detail}" for r in ranking.itertuples(index=False)][:12]
            if len(ranking) > 12:
                out.append(f"- ... {len(ranking) - 12} more in the findings table")
            out.append("")
    if claims is not None and not claims.empty:
        out += ["## The paper's claims in this run", ""]
        show = claims.assign(verdict=[_verdict(x) for x in claims["supported"]])
        cols = [c for c in ("claim", "paper_claim", "verdict", "detail") if c in show.columns]
        out += [markdown_table(show, cols), ""]
    if comparison is not None:
        out += ["## Beside the paper", ""]
        if comparison.empty:
            out += [
                "No model of this run is mapped onto a cell of the paper (`paper.families` in the config), "
                "so there is no side-by-side table.",
                "",
            ]
        else:
            diffs = comparison.dropna(subset=["diff"])
            for metric, g in diffs.groupby("metric", sort=False):
                inside = [as_bool(x) for x in g["paper_in_ci"]] if "paper_in_ci" in g.columns else []
                known = [x for x in inside if x is not None]
                out.append(
                    f"- `{metric}`: {len(g)} matched cells, ours - paper mean {g['diff'].mean():+.3f} "
                    f"(range {g['diff'].min():+.3f} to {g['diff'].max():+.3f})"
                    + (
                        f"; the paper's value lies in our 95% CI in {sum(known)} of {len(known)}"
                        if known
                        else ""
                    )
                    + "."
                )
            out.append("")
    if figures:
        out += ["## Figures", ""]
        out += [f"- [{name}]({_link(path, start)})" for name, path in figures.items()]
        out.append("")
    if tables:
        out += ["## Tables", ""]
        out += [f"- [{name}]({_link(path, start)})" for name, path in tables.items()]
        out.append("")
    out += [
        "## Provenance",
        "",
        "Each model directory (`<family>/seed<k>/models/<model>/provenance.json`) records the config subset, "
        "seed, input hashes, package and code versions it came from.",
    ]
    out += [f"- [{os.path.basename(p)}]({_link(p, start)})" for p in provenance]
    out.append("")
    return "\n".join(out)


def config_digest(config: Mapping[str, Any]) -> str:
    """The first 12 hex digits of the sha256 of the loaded config (the summary names the run by it)."""
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()[:12]
