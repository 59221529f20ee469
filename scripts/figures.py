"""All study figures from the tidy tables (one job; each declared output is one figure of the registry
kdprivacy.reporting.plots.FIGURES, drawn by draw_figures; a figure the tables cannot fill is a notice).

Named inputs: ``mia`` and the other tables the declared figures read; ``roc``: the per-model ``*.roc.csv``
files, aligned index by index with ``params.models``. ``params.cfg``: ``attacks`` (column order),
``student_bases`` (``["family/base", ...]``, aligned with the ``methods`` outputs), ``sources`` (the
ablations' source students).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy.reporting import plots  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inputs = plots.FigureInputs(
    dict(snakemake.input.items()),  # noqa: F821
    models=list(snakemake.params.models),  # noqa: F821
    attacks=list(cfg["attacks"]),
    student_bases=list(cfg["student_bases"]),
    sources=cfg["sources"],
)
plots.draw_figures(inputs, dict(snakemake.output.items()))  # noqa: F821
