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
from kdprivacy.reporting import plots  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821
inputs = plots.FigureInputs(
    job.inputs,
    models=list(job.snakemake.params.models),
    attacks=list(job.cfg["attacks"]),
    student_bases=list(job.cfg["student_bases"]),
    sources=job.cfg["sources"],
)
plots.draw_figures(inputs, job.outputs)
