"""All study figures from the tidy tables (one job; each declared output is one figure).

Named inputs (all optional except ``mia``): ``mia``, ``mia_category``, ``memorization``,
``memorization_summary``, ``utility``, ``blocks``; ``roc``: the per-model ``*.roc.csv`` files, aligned
index by index with ``params.models`` (dicts with ``family, seed, model, role, method, base, ablation,
ablation_value``).
Named outputs (each optional; only the declared ones are drawn): ``methods`` (a list, aligned with
``cfg["student_bases"]``), ``baselines``, ``memorization_rate``, ``memorization_gap``, ``utility``,
``blocks``, ``objective``, ``sgo``, ``category``, ``roc``, ``membership_vs_memorization``,
``privacy_utility``. A declared figure the tables cannot fill is written as a small notice saying why.
``params.cfg``: ``attacks`` (column order), ``student_bases`` (``["family/base", ...]``), ``focus_attack``
(the attack of the per-category, ROC and membership-vs-memorization figures; default: the first of
ref_pretrained, ref_external, loss that was run), ``sources`` (the ablations' source students:
``{family: {"objective": {"student", "objective"}, "sgo_ratio": {"student", "value"}}}``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import plots  # noqa: E402

cfg = dict(snakemake.params.cfg or {})  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821
out = dict(snakemake.output.items())  # noqa: F821


def table(name):
    return pd.read_csv(inp[name]) if name in inp else None


def as_list(value):
    return [value] if isinstance(value, str) else list(value)


mia = table("mia")
attacks = list(cfg.get("attacks") or [])
sources = cfg.get("sources") or {}
present = list(dict.fromkeys(mia["attack"]))
focus = cfg.get("focus_attack") or next(
    (a for a in ("ref_pretrained", "ref_external", "loss") if a in present), present[0] if present else None
)
log.info("focus attack: %s", focus)


def draw(name, title, make, needs=()):
    """Draw output ``name`` with ``make()``; a notice figure when an input is missing or nothing to draw."""
    if name not in out:
        return
    missing = [n for n in needs if n not in inp]
    result = None if missing else make()
    if result is None:
        reason = (
            f"input(s) {missing} not given" if missing else "the tables hold no rows for it (see the log)"
        )
        plots.placeholder(out[name], title, reason)
        log.info("%s: notice written (%s)", name, reason)
    else:
        log.info("%s: drawn", name)


if "methods" in out:
    paths, bases = as_list(out["methods"]), list(cfg.get("student_bases") or [])
    if len(paths) != len(bases):
        raise ValueError(f"output methods ({len(paths)}) and cfg student_bases ({len(bases)}) must align")
    vmin, vmax = plots.shared_auc_scale(mia)
    log.info("shared AUC colour scale %.2f..%.2f", vmin, vmax)
    for path, spec in zip(paths, bases):
        family, base = spec.split("/", 1)
        if plots.method_heatmap(mia, family, base, path, vmin, vmax, attacks) is None:
            plots.placeholder(path, f"{family}/{base}: KD method x attack AUC", "no student of this base")

draw("baselines", "Teacher and No-KD AUC", lambda: plots.baselines_heatmap(mia, out["baselines"], attacks))
draw(
    "memorization_rate",
    "Memorization (member rate)",
    lambda: plots.memorization_heatmap(
        table("memorization_summary"), out["memorization_rate"], "member_rate"
    ),
    ["memorization_summary"],
)
draw(
    "memorization_gap",
    "Memorization gap",
    lambda: plots.memorization_heatmap(table("memorization_summary"), out["memorization_gap"], "gap"),
    ["memorization_summary"],
)
draw(
    "utility", "Utility (ROUGE-L)", lambda: plots.utility_bars(table("utility"), out["utility"]), ["utility"]
)
draw("blocks", "Per-block risk", lambda: plots.block_curves(table("blocks"), out["blocks"]), ["blocks"])
draw(
    "objective",
    "KD objective ablation",
    lambda: plots.objective_ablation(mia, out["objective"], attacks, sources),
)
draw("sgo", "SGO-ratio ablation", lambda: plots.sgo_ablation(mia, out["sgo"], attacks, sources))
draw(
    "category",
    "Per-task risk",
    lambda: plots.category_risk(table("mia_category"), out["category"], focus),
    ["mia_category"],
)


def roc_table():
    models = list(snakemake.params.models)  # noqa: F821
    files = as_list(inp["roc"])
    if len(files) != len(models):
        raise ValueError(f"roc ({len(files)}) and params.models ({len(models)}) must align index by index")
    frames = []
    for spec, path in zip(models, files):
        points = pd.read_csv(path)
        for column in reversed(list(spec)):
            points.insert(0, column, spec[column])
        frames.append(points)
    return pd.concat(frames, ignore_index=True)


draw("roc", "ROC curves", lambda: plots.roc_curves(roc_table(), out["roc"], focus), ["roc"])
draw(
    "membership_vs_memorization",
    "Membership vs memorization",
    lambda: plots.membership_vs_memorization(
        mia, table("memorization"), out["membership_vs_memorization"], focus
    ),
    ["memorization"],
)
draw(
    "privacy_utility",
    "Privacy vs utility",
    lambda: plots.privacy_vs_utility(mia, table("utility"), out["privacy_utility"]),
    ["utility"],
)
