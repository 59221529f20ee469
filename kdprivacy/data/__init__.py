"""Instruction data: where records come from, and how they are split into the pools every later step reads.

:mod:`~kdprivacy.data.synthetic` generates a Dolly-schema corpus with per-record secrets (its word lists in
:mod:`~kdprivacy.data.vocabulary`), :mod:`~kdprivacy.data.sources` reads and validates file, hub or
synthetic records, and :mod:`~kdprivacy.data.manifest` splits them into disjoint pools and writes the
manifest. This file holds what all three share: the fields of a record and the error they raise.
"""

FIELDS = ("instruction", "context", "response", "category")
SECRET_FIELDS = ("secret", "secret_kind")
UNCATEGORIZED = "uncategorized"
REQUIRED = ("instruction", "response")


class DataError(ValueError):
    """Bad input data or configuration; the message names the column, file, pool or count at fault."""
