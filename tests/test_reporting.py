"""The reporting package as a whole: the method order read from the method registry, and per-model tables
stacked under their model's key columns (import cycles and module sizes: tests/test_architecture.py)."""

import pandas as pd

from kdprivacy.kd import KD_METHODS, METHODS
from kdprivacy.reporting import tables, tidy

def test_method_order_comes_from_the_registry():
    assert tidy.METHOD_ORDER == ("teacher", *METHODS)
    ranks = [tidy.method_sort_key(m) for m in ("teacher", *METHODS, "unknown")]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    students = pd.DataFrame(
        [{"family": "f", "model": m, "role": "student", "method": m, "attack": "loss", "auc": 0.6} for m in METHODS]
    )
    assert list(tidy.kd_method_auc(students)["method"]) == list(KD_METHODS)


def test_collect_puts_model_keys_in_front(tmp_path):
    models = [{"family": "f", "seed": 0, "model": "a"}, {"family": "f", "seed": 1, "model": "a"}]
    paths = []
    for i, spec in enumerate(models):
        paths.append(tmp_path / f"{i}.csv")
        pd.DataFrame({"model": ["stale"], "x": [i]}).to_csv(paths[-1], index=False)
    table = tables.collect([str(p) for p in paths], models)
    assert list(table.columns) == ["family", "seed", "model", "x"]
    assert table.to_dict("records") == [{**m, "x": i} for i, m in enumerate(models)]
