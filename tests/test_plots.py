import numpy as np
import pandas as pd
import pytest

from kdprivacy import plots


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
    drawn = plots.heatmap(table, row="row", col="col", value="auc", path=path, title="AUC")
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
    drawn = plots.heatmap(table, "row", "col", "auc", tmp_path / "h.png", col_order=["zlib", "loss", "min_k"],
                          fmt="{:.3f}")
    assert list(drawn.values.columns) == ["zlib", "loss", "min_k"]
    assert (drawn.texts["min_k"] == "").all()
    assert drawn.texts.loc["gpt2/teacher", "loss"] == "0.912"
    with pytest.raises(ValueError, match="duplicate"):
        plots.heatmap(pd.concat([table, table.iloc[:1]]), "row", "col", "auc", tmp_path / "d.png")
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
    out = plots.auc_by_model(mia)
    assert out.label.tolist() == ["gpt2/teacher", "gpt2/kd-small", "gpt2/teacher"]
    assert out.attack.tolist() == ["loss", "loss", "zlib"]
    assert out.auc.tolist() == pytest.approx([0.85, 0.5, 0.7])
    assert out.n_seeds.tolist() == [2, 2, 1]
