from pathlib import Path

import math

import numpy as np
import pandas as pd
import pytest

from kdprivacy import config, io, provenance
from kdprivacy.reporting import plots
from kdprivacy.reporting.plots import ablations as ablation_plots
from kdprivacy.reporting.plots import base as plot_base
from kdprivacy.reporting.plots import memorization as memo_plots
from kdprivacy.reporting.plots import mia as mia_plots
from kdprivacy.reporting.plots import utility as utility_plots

from toy import mia_rows, model


def mia_table():
    return pd.DataFrame(
        {
            "row": ["gpt2/teacher", "gpt2/teacher", "gpt2/kd-small", "gpt2/nokd-small", "gpt2/nokd-small"],
            "col": ["loss", "zlib", "loss", "loss", "zlib"],
            "auc": [0.9123, 0.8767, 0.6049, 0.4987, 0.5],
        }
    )


def test_heatmap_annotations_equal_table_and_missing_blank(tmp_path):
    table = mia_table()
    path = tmp_path / "fig" / "heat.png"
    drawn = plot_base.heatmap(table, row="row", col="col", value="auc", path=path, title="AUC")
    assert path.is_file() and path.stat().st_size > 0
    assert list(drawn.values.index) == ["gpt2/teacher", "gpt2/kd-small", "gpt2/nokd-small"]
    assert list(drawn.values.columns) == ["loss", "zlib"]
    for r in table.itertuples(index=False):
        assert drawn.values.loc[r.row, r.col] == r.auc
        assert drawn.texts.loc[r.row, r.col] == f"{r.auc:.2f}"
    # kd-small has no zlib row: blank, never invented.
    assert np.isnan(drawn.values.loc["gpt2/kd-small", "zlib"])
    assert drawn.texts.loc["gpt2/kd-small", "zlib"] == ""
    assert (drawn.texts != "").sum().sum() == len(table)


def test_heatmap_orders_and_duplicates(tmp_path):
    table = mia_table()
    drawn = plot_base.heatmap(
        table, "row", "col", "auc", tmp_path / "h.png", col_order=["zlib", "loss", "min_k"], fmt="{:.3f}"
    )
    assert list(drawn.values.columns) == ["zlib", "loss", "min_k"]
    assert (drawn.texts["min_k"] == "").all()
    assert drawn.texts.loc["gpt2/teacher", "loss"] == "0.912"
    with pytest.raises(ValueError, match="duplicate"):
        plot_base.heatmap(pd.concat([table, table.iloc[:1]]), "row", "col", "auc", tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()


def test_auc_by_model_averages_seeds():
    mia = pd.DataFrame(
        {
            "family": ["gpt2"] * 5,
            "seed": [0, 1, 0, 1, 0],
            "model": ["teacher", "teacher", "kd-small", "kd-small", "teacher"],
            "attack": ["loss", "loss", "loss", "loss", "zlib"],
            "auc": [0.9, 0.8, 0.6, 0.4, 0.7],
        }
    )
    out = plot_base.auc_by_model(mia)
    assert out.label.tolist() == ["gpt2/teacher", "gpt2/kd-small", "gpt2/teacher"]
    assert out.attack.tolist() == ["loss", "loss", "zlib"]
    assert out.auc.tolist() == pytest.approx([0.85, 0.5, 0.7])
    assert out.n_seeds.tolist() == [2, 2, 1]


# ============================================================================ study figures
import matplotlib.pyplot as plt  # noqa: E402

KEY = ["family", "seed", "model", "role", "method", "base", "ablation", "ablation_value"]


TEACHER = model("teacher", "teacher", "teacher", role="teacher")
NOKD_S, KD_S, MINI_S = (
    model("nokd-s", "nokd", "s"),
    model("kd-s", "kd", "s"),
    model("minillm-s", "minillm", "s"),
)
NOKD_L, KD_L = model("nokd-l", "nokd", "l"), model("kd-l", "kd", "l")


def study_mia():
    spec = [(TEACHER, "loss", 0.91, 0.03), (TEACHER, "zlib", 0.88, 0.03)]
    spec += [
        (NOKD_S, "loss", 0.501, 0.05),
        (NOKD_S, "zlib", 0.49, 0.05),
        (KD_S, "loss", 0.62, 0.05),
        (KD_S, "zlib", 0.58, 0.05),
        (MINI_S, "loss", 0.53, 0.05),
    ]  # minillm-s has no zlib row
    spec += [
        (NOKD_L, "loss", 0.5, 0.05),
        (NOKD_L, "zlib", 0.51, 0.05),
        (KD_L, "loss", 0.71, 0.05),
        (KD_L, "zlib", 0.66, 0.05),
    ]
    spec += [
        (model("kd-s.obj-rkl", "kd", "s", ablation="objective", value="rkl"), "loss", 0.55, 0.02),
        (model("kd-s.obj-fkl", "kd", "s", ablation="objective", value="fkl"), "loss", 0.63, 0.02),
    ]
    return mia_rows(spec)


class Capture:
    """Records the line data of every figure written through kdprivacy.io (then writes it as usual)."""

    def __init__(self, monkeypatch):
        self.lines, self.texts = [], []
        original = io.write_figure

        def spy(fig, path, **kwargs):
            for ax in fig.axes:
                self.lines += [
                    (
                        line.get_label(),
                        np.asarray(line.get_xdata(), float),
                        np.asarray(line.get_ydata(), float),
                    )
                    for line in ax.lines
                ]
                for container in ax.containers:  # errorbar(): the label sits on the container
                    data = getattr(container, "lines", (None,))[0]
                    if data is not None:
                        self.lines.append(
                            (
                                container.get_label(),
                                np.asarray(data.get_xdata(), float),
                                np.asarray(data.get_ydata(), float),
                            )
                        )
                self.texts += [t.get_text() for t in ax.texts]
            original(fig, path, **kwargs)

        monkeypatch.setattr(io, "write_figure", spy)


def test_method_heatmaps_share_scale_and_equal_table(tmp_path):
    mia = study_mia()
    vmin, vmax = mia_plots.shared_auc_scale(mia)
    # largest student distance from 0.5: kd-l loss 0.71 -> 0.21 -> rounded up to 0.25
    assert (vmin, vmax) == pytest.approx((0.25, 0.75))
    small = mia_plots.method_heatmap(mia, "gpt2", "s", tmp_path / "s.png", vmin, vmax, ["zlib", "loss"])
    large = mia_plots.method_heatmap(mia, "gpt2", "l", tmp_path / "l.png", vmin, vmax, ["zlib", "loss"])
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "l.png").stat().st_size > 0
    assert list(small.values.index) == ["nokd", "kd", "minillm"]  # method order, ablation copies excluded
    assert list(small.values.columns) == ["zlib", "loss"]
    assert small.values.loc["kd", "loss"] == 0.62 and small.texts.loc["kd", "loss"] == "0.62"
    assert large.values.loc["kd", "zlib"] == 0.66 and list(large.values.index) == ["nokd", "kd"]
    assert np.isnan(small.values.loc["minillm", "zlib"]) and small.texts.loc["minillm", "zlib"] == ""
    students = mia[(mia.role == "student") & mia.ablation.isna() & (mia.base == "s")]
    for r in students.itertuples():
        assert small.values.loc[r.method, r.attack] == r.auc
    assert mia_plots.method_heatmap(mia, "gpt2", "xl", tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_method_heatmap_means_seeds_and_names_shared_methods(tmp_path):
    rows = [
        (model("kd-s", "kd", "s", seed=0), "loss", 0.6, 0.1),
        (model("kd-s", "kd", "s", seed=1), "loss", 0.7, 0.1),
        (model("kd-s-lr", "kd", "s"), "loss", 0.55, 0.1),
    ]
    drawn = mia_plots.method_heatmap(mia_rows(rows), "gpt2", "s", tmp_path / "h.png")
    assert drawn.values.loc["kd (kd-s)", "loss"] == pytest.approx(0.65)
    assert drawn.values.loc["kd (kd-s-lr)", "loss"] == 0.55


def test_baselines_heatmap(tmp_path):
    drawn = mia_plots.baselines_heatmap(study_mia(), tmp_path / "b.png")
    assert list(drawn.values.index) == ["gpt2/teacher", "gpt2/nokd-s", "gpt2/nokd-l"]
    assert drawn.values.loc["gpt2/teacher", "zlib"] == 0.88
    assert drawn.texts.loc["gpt2/nokd-l", "zlib"] == "0.51"
    only_kd = study_mia()
    only_kd = only_kd[only_kd.method == "kd"]
    assert mia_plots.baselines_heatmap(only_kd, tmp_path / "none.png") is None


def memo_summary():
    rows = []
    for m, rate, gap in ((TEACHER, 0.12, 0.05), (KD_S, 0.06, 0.01), (NOKD_S, 0.04, 0.0)):
        for metric, scale in (("match_rate", 1.0), ("exact_k", 0.5), ("exposure", 10.0)):
            rows.append(
                {
                    **m,
                    "metric": metric,
                    "subset": "all",
                    "member_rate": rate * scale,
                    "member_ci_low": rate * scale - 0.01,
                    "member_ci_high": rate * scale + 0.01,
                    "gap": gap * scale,
                    "gap_ci_low": gap * scale - 0.01,
                    "gap_ci_high": gap * scale + 0.01,
                }
            )
    return pd.DataFrame(rows)


def test_memorization_heatmaps(tmp_path):
    table = memo_summary()
    rate = memo_plots.memorization_heatmap(table, tmp_path / "rate.png")
    assert list(rate.values.columns) == ["match_rate", "exact_k"]  # exposure is not on the 0..1 scale
    assert list(rate.values.index) == ["teacher", "nokd-s", "kd-s"]
    assert rate.values.loc["kd-s", "match_rate"] == 0.06 and rate.texts.loc["teacher", "exact_k"] == "0.060"
    gap = memo_plots.memorization_heatmap(table, tmp_path / "gap.png", value="gap")
    assert gap.values.loc["teacher", "match_rate"] == 0.05 and gap.texts.loc["kd-s", "match_rate"] == "+0.010"
    assert memo_plots.memorization_heatmap(table, tmp_path / "no.png", metrics=("secret_hit",)) is None
    assert not (tmp_path / "no.png").exists()


def utility_table():
    util = pd.DataFrame(
        [
            {**m, "category": c, "rouge_l": v, "rouge_l_ci_low": v - 1, "rouge_l_ci_high": v + 1}
            for m, v in ((TEACHER, 27.0), (KD_S, 21.5), (NOKD_S, 20.0))
            for c in ("ALL", "open_qa")
        ]
    )
    util.loc[util.category == "open_qa", "rouge_l"] = 99.0
    return util


def best_attack_table():
    """``mia_best_attack.csv`` rows (kdprivacy.reporting.best_attack.held_out_best) for the study models."""
    rows = []
    for m, attack, auc, same_attack, same_max in (
        (TEACHER, "zlib", 0.86, "loss", 0.91),
        (NOKD_S, "loss", 0.49, "loss", 0.501),
        (KD_S, "loss", 0.6, "loss", 0.62),
        (MINI_S, "loss", 0.52, "loss", 0.53),
        (model("kd-s.obj-rkl", "kd", "s", ablation="objective", value="rkl"), "loss", 0.54, "loss", 0.55),
    ):
        keys = {k: v for k, v in m.items() if k != "seed"}
        rows.append({**keys, "best_attack": attack, "auc_selection": auc + 0.02, "auc": auc,
                     "ci_low": auc - 0.04, "ci_high": auc + 0.04, "n_seeds": 1, "n_attacks": 2,
                     "auc_same_data_max": same_max, "same_data_attack": same_attack, "split_seed": 0})
    return pd.DataFrame(rows)


def test_utility_bars_and_privacy_vs_utility(tmp_path):
    util = utility_table()
    drawn = utility_plots.utility_bars(util, tmp_path / "u.png")
    assert dict(zip(drawn.model, drawn.rouge_l)) == {"teacher": 27.0, "nokd-s": 20.0, "kd-s": 21.5}
    assert drawn.ci_low.tolist() == [26.0, 19.0, 20.5]
    pu = utility_plots.privacy_vs_utility(best_attack_table(), util, tmp_path / "pu.png")
    best = pu.set_index("model")
    # the held-out best attack of mia_best_attack.csv as it is (chosen on one half, AUC on the other), not
    # the maximum of the same-data AUCs (auc_same_data_max, loss 0.91 for the teacher)
    assert best.loc["teacher", "best_attack"] == "zlib" and best.loc["teacher", "auc"] == 0.86
    assert (best.loc["teacher", "ci_low"], best.loc["teacher", "ci_high"]) == (0.82, 0.9)
    assert best.loc["nokd-s", "best_attack"] == "loss" and best.loc["kd-s", "rouge_l"] == 21.5
    assert "minillm-s" not in best.index  # no utility row: no point
    assert "kd-s.obj-rkl" not in best.index  # ablation copies are not configured models
    assert utility_plots.utility_bars(util[util.category == "open_qa"], tmp_path / "none.png") is None


def blocks_table(seeds=(0,)):
    rows = []
    for seed in seeds:
        for signal, sigma, shift in (("lens_loss", math.nan, 0.1), ("mope", 0.01, 0.0)):
            for m, aucs in ((TEACHER, [0.55, 0.7, 0.6]), (KD_S, [0.5, 0.52])):
                for b, auc in enumerate(aucs):
                    auc = auc + 0.02 * seed + shift
                    rows.append(
                        {
                            **m,
                            "seed": seed,
                            "signal": signal,
                            "block": b,
                            "n_blocks": len(aucs),
                            "sigma": sigma,
                            "auc": auc,
                            "auc_ci_low": auc - 0.04,
                            "auc_ci_high": auc + 0.04,
                        }
                    )
    return pd.DataFrame(rows)


def shadow_curve_table(seeds=(0, 1)):
    rows = []
    for seed in seeds:
        for m, base in ((TEACHER, 0.7), (KD_S, 0.55)):
            for n in (4, 6, 8):
                auc = base + 0.01 * n + 0.01 * seed
                rows.append({**m, "seed": seed, "n_shadows": n, "auc": auc, "auc_ci_low": auc - 0.05,
                             "auc_ci_high": auc + 0.05, "tpr_at_fpr_0.01": math.nan, "tpr_at_fpr_0.05": auc / 4,
                             "tpr_at_fpr_0.05_ci_low": auc / 5, "tpr_at_fpr_0.05_ci_high": auc / 3})
    return pd.DataFrame(rows)


def test_shadow_curves_mean_over_seeds_and_fall_back_to_a_resolvable_fpr(tmp_path):
    from kdprivacy.reporting.plots.mia import shadow_curves

    table = shadow_curve_table()
    drawn = shadow_curves(table, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0 and len(drawn) == 6
    row = drawn[(drawn["model"] == "teacher") & (drawn["n_shadows"] == 8)].iloc[0]
    assert row["auc"] == pytest.approx(0.7 + 0.08 + 0.005)  # mean of the two seeds
    assert row["auc_ci_low"] == pytest.approx(0.78 - 0.05) and row["auc_ci_high"] == pytest.approx(0.79 + 0.05)
    assert "tpr_at_fpr_0.05" in drawn and "tpr_at_fpr_0.01" not in drawn  # 1% not resolvable: 5% drawn
    assert shadow_curves(table.iloc[:0], tmp_path / "none.png") is None
    assert not plt.get_fignums()


def test_block_curves_points_equal_table(tmp_path, monkeypatch):
    """One panel per signal (registry order: the logit lens before MoPe), x = relative depth, so the 3-block
    teacher and the 2-block student end together at 1."""
    cap = Capture(monkeypatch)
    table = blocks_table()
    drawn = mia_plots.block_curves(table, tmp_path / "blocks.png")
    assert (tmp_path / "blocks.png").is_file()
    merged = table.merge(drawn, on=["model", "signal", "block"], suffixes=("", "_drawn"))
    assert len(merged) == len(table)
    assert np.allclose(merged.auc, merged.auc_drawn)
    lines = [(label, x.tolist(), y.tolist()) for label, x, y in cap.lines if label in ("teacher", "kd-s")]
    assert [label for label, _, _ in lines] == ["teacher", "kd-s", "teacher", "kd-s"]
    assert lines[0][1] == pytest.approx([1 / 3, 2 / 3, 1.0]) and lines[1][1] == pytest.approx([0.5, 1.0])
    assert lines[0][2] == pytest.approx([0.65, 0.8, 0.7])  # lens_loss panel first
    assert lines[2][2] == pytest.approx([0.55, 0.7, 0.6]) and lines[3][2] == pytest.approx([0.5, 0.52])
    # two seeds: mean, interval = envelope of the per-seed intervals
    two = mia_plots.block_curves(blocks_table((0, 1)), tmp_path / "b2.png")
    two = two[two.signal == "mope"].set_index(["model", "block"])
    assert two.loc[("teacher", 1), "auc"] == pytest.approx(0.71)
    assert two.loc[("teacher", 1), "ci_low"] == pytest.approx(0.66)
    assert two.loc[("teacher", 1), "ci_high"] == pytest.approx(0.76)
    assert two.loc[("teacher", 1), "n_seeds"] == 2
    assert mia_plots.block_curves(table.iloc[0:0], tmp_path / "none.png") is None


def test_objective_ablation_values_equal_table(tmp_path, monkeypatch):
    cap = Capture(monkeypatch)
    mia = study_mia()
    drawn = ablation_plots.objective_ablation(mia, tmp_path / "obj.png")
    assert set(drawn.objective) == {"rkl", "fkl"}
    got = dict(zip(drawn.objective, drawn.auc))
    assert got == {"rkl": 0.55, "fkl": 0.63}
    # the figure's error-bar caps are the table's CI bounds
    caps = sorted(float(y[0]) for label, _, y in cap.lines if label == "_nolegend_")
    assert caps == sorted([*drawn.ci_low, *drawn.ci_high])
    # with the source student under its own objective (not already an ablation value)
    only_rkl = mia[mia.ablation_value.astype(object) != "fkl"]
    with_src = ablation_plots.objective_ablation(
        only_rkl,
        tmp_path / "obj2.png",
        sources={"gpt2": {"objective": {"student": "kd-s", "objective": "fkl"}}},
    )
    got = with_src.set_index(["objective", "attack"]).auc
    assert got[("fkl", "loss")] == 0.62 and got[("fkl", "zlib")] == 0.58 and got[("rkl", "loss")] == 0.55
    assert ablation_plots.objective_ablation(mia[mia.ablation.isna()], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def sgo_mia():
    spec = []
    for ratio, auc in ((0.0, 0.52), (0.5, 0.58), (1.0, 0.66)):
        m = model(f"imitkd-s.sgo-{ratio:g}", "imitkd", "s", ablation="sgo_ratio", value=str(ratio))
        spec += [(m, "loss", auc, 0.03), (m, "zlib", auc - 0.05, 0.03)]
    return pd.concat([study_mia(), mia_rows(spec)], ignore_index=True)


def test_sgo_ablation_y_values_equal_table(tmp_path, monkeypatch):
    cap = Capture(monkeypatch)
    drawn = ablation_plots.sgo_ablation(sgo_mia(), tmp_path / "sgo.png", attack_order=["loss", "zlib"])
    loss = drawn[drawn.attack == "loss"]
    assert loss.ratio.tolist() == [0.0, 0.5, 1.0] and loss.auc.tolist() == [0.52, 0.58, 0.66]
    lines = {label: y for label, _, y in cap.lines if label in ("loss", "zlib")}
    assert lines["loss"].tolist() == pytest.approx([0.52, 0.58, 0.66])
    assert lines["zlib"].tolist() == pytest.approx([0.47, 0.53, 0.61])
    assert ablation_plots.sgo_ablation(study_mia(), tmp_path / "none.png") is None


def category_table():
    rows = []
    for m, base_auc in ((TEACHER, 0.8), (KD_S, 0.6), (NOKD_S, 0.5)):
        for c, shift in (("creative_writing", 0.1), ("classification", -0.05), ("open_qa", 0.0)):
            for attack in ("loss", "zlib"):
                auc = base_auc + shift
                rows.append(
                    {
                        **m,
                        "attack": attack,
                        "category": c,
                        "auc": auc,
                        "auc_ci_low": auc - 0.1,
                        "auc_ci_high": auc + 0.1,
                    }
                )
    return pd.DataFrame(rows)


def test_category_risk(tmp_path, monkeypatch):
    cap = Capture(monkeypatch)
    table = category_table()
    drawn = mia_plots.category_risk(table, tmp_path / "cat.png", "loss")
    assert list(dict.fromkeys(drawn.category)) == ["creative_writing", "open_qa", "classification"]
    got = drawn.set_index(["model", "category"]).auc
    for r in table[table.attack == "loss"].itertuples():
        assert got[(r.model, r.category)] == pytest.approx(r.auc)
    teacher_line = next(x for label, x, _ in cap.lines if label == "teacher")
    assert teacher_line.tolist() == pytest.approx([0.9, 0.8, 0.75])
    assert mia_plots.category_risk(table, tmp_path / "none.png", "mope") is None


def test_roc_curves_log_log(tmp_path):
    rows = []
    for m, pts in (
        (TEACHER, [(0, 0), (0, 0.2), (0.01, 0.3), (0.1, 0.8), (1, 1)]),
        (KD_S, [(0, 0), (0.05, 0.06), (1, 1)]),
    ):
        rows += [{**m, "attack": "loss", "fpr": f, "tpr": t, "threshold": 0.0} for f, t in pts]
    roc = pd.DataFrame(rows)
    drawn = mia_plots.roc_curves(roc, tmp_path / "roc.png", "loss")
    assert (drawn.fpr > 0).all() and (drawn.tpr > 0).all()
    assert drawn[drawn.model == "teacher"].fpr.tolist() == [0.01, 0.1, 1.0]
    assert mia_plots.roc_curves(roc, tmp_path / "none.png", "zlib") is None


def memorization_table():
    return pd.DataFrame(
        [
            {**m, "member_rate": r, "member_rate_ci_low": r - 0.01, "member_rate_ci_high": r + 0.01}
            for m, r in ((TEACHER, 0.2), (KD_S, 0.05), (MINI_S, 0.08), (NOKD_S, 0.03))
        ]
    )


def test_membership_vs_memorization_scatter(tmp_path):
    memo = memorization_table()
    drawn = memo_plots.membership_vs_memorization(study_mia(), memo, tmp_path / "mm.png", "loss").set_index(
        "model"
    )
    assert "teacher" not in drawn.index
    assert drawn.loc["minillm-s", "auc"] == 0.53 and drawn.loc["minillm-s", "member_rate"] == 0.08
    assert memo_plots.membership_vs_memorization(study_mia(), memo, tmp_path / "none.png", "mope") is None


def test_placeholder(tmp_path):
    plot_base.placeholder(tmp_path / "p.png", "Objective ablation", "no ablation rows")
    assert (tmp_path / "p.png").stat().st_size > 0
    assert not plt.get_fignums()


# ============================================================================ the FIGURES registry
REPO = Path(__file__).resolve().parents[1]
FIGURE_INPUTS = {
    "mia", "mia_category", "mia_best_attack", "memorization", "memorization_summary", "utility", "blocks",
    "roc", "mia_shadow_curve",
}


def test_figures_registry_entries_are_complete():
    """Every figure has a caption file, a report category, a notice title, a drawing function that resolves, a
    module the code version can hash, and reads only inputs the workflow writes."""
    assert plots.FIGURES and all(name == spec.name for name, spec in plots.FIGURES.items())
    stems = [spec.file for spec in plots.FIGURES.values()]
    assert len(set(stems)) == len(stems)
    for spec in plots.FIGURES.values():
        assert (REPO / "report" / f"{spec.caption}.rst").is_file(), spec.name
        assert spec.category and spec.title, spec.name
        assert callable(spec.fn), spec.name
        assert provenance.module_path(spec.module) is not None, spec.name
        assert set(spec.tables) <= FIGURE_INPUTS, spec.name
        assert spec.per_base == ("{family}" in spec.file), spec.name
    assert provenance.code_version(*plots.code_modules())


def test_importing_the_registry_imports_no_plotting(tmp_path):
    """The rules read FIGURES at every Snakefile parse: no matplotlib or pandas there."""
    import subprocess
    import sys

    code = "import sys, kdprivacy.reporting.plots; "
    code += "print('matplotlib' in sys.modules, 'pandas' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def test_enabled_figures_follow_the_config():
    cfg = config.load_yaml(str(REPO / "configs" / "smoke.yaml"))
    names = [spec.name for spec in plots.enabled_figures(cfg)]
    assert names[:7] == [
        "methods", "baselines", "category", "roc", "memorization_rate", "memorization_gap",
        "membership_vs_memorization",
    ]
    assert ("utility" in names) == cfg.utility.enabled and ("blocks" in names) == cfg.blocks.enabled
    off = cfg.model_copy(update={"utility": cfg.utility.model_copy(update={"enabled": False})})
    assert not {"utility", "privacy_utility"} & {spec.name for spec in plots.enabled_figures(off)}


def test_draw_figures_draws_every_registered_figure(tmp_path, monkeypatch):
    """Given every input, each entry of FIGURES is drawn by its function (no notice); without its tables, a
    notice naming them is written in its place."""
    tables = {
        "mia": sgo_mia(), "mia_category": category_table(), "memorization": memorization_table(),
        "memorization_summary": memo_summary(), "utility": utility_table(), "blocks": blocks_table(),
        "mia_best_attack": best_attack_table(), "mia_shadow_curve": shadow_curve_table(),
    }
    paths = {}
    for name, table in tables.items():
        paths[name] = str(tmp_path / f"{name}.csv")
        table.to_csv(paths[name], index=False)
    mia = tables["mia"]
    keys = mia.drop_duplicates("model")[KEY].astype(object)
    models = keys.where(keys.notna(), None).to_dict("records")
    paths["roc"] = []
    for spec in models:
        path = tmp_path / f"{spec['model']}.roc.csv"
        points = {"attack": "loss", "fpr": [0, 0.1, 1], "tpr": [0, 0.3, 1], "threshold": [9, 1, 0]}
        pd.DataFrame(points).to_csv(path, index=False)
        paths["roc"].append(str(path))
    notices = []
    original = plot_base.placeholder
    monkeypatch.setattr(plot_base, "placeholder", lambda *a: (notices.append(a[1]), original(*a)))
    out = tmp_path / "out"
    outputs = {
        spec.name: [str(out / "methods_s.png")] if spec.per_base else str(out / f"{spec.file}.png")
        for spec in plots.FIGURES.values()
    }
    inputs = plots.FigureInputs(paths, models, attacks=["loss", "zlib"], student_bases=["gpt2/s"])
    plots.draw_figures(inputs, outputs)
    assert notices == []
    for name, files in outputs.items():
        assert all(Path(p).stat().st_size > 0 for p in plots.as_list(files)), name
    bare = {name: out.replace("/out/", "/bare/") for name, out in outputs.items() if name != "methods"}
    plots.draw_figures(plots.FigureInputs({"mia": paths["mia"]}, models), bare)
    needs_more = [s.title for s in plots.FIGURES.values() if s.name in bare and set(s.tables) - {"mia"}]
    assert needs_more and set(needs_more) <= set(notices)
    assert not plt.get_fignums()
