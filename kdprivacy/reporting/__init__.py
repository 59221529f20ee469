"""Reporting: the study's tidy tables, its claims tested on them, the paper beside this run, the summary page
and the figures.

:mod:`~kdprivacy.reporting.tables` builds the tables from the per-model results and
:mod:`~kdprivacy.reporting.tidy` reads them (configured rows, seed pooling, method order); the claims
(:mod:`~kdprivacy.reporting.claims`), the paper comparison (:mod:`~kdprivacy.reporting.paper`), the summary
(:mod:`~kdprivacy.reporting.summary`) and the figures (:mod:`~kdprivacy.reporting.plots`, registry
``FIGURES``) are built from them.
"""
