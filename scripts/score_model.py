"""Score one model (target, reference or external LM) on the shared evaluation set, one forward pass.

Named inputs: ``manifest``; ``model`` (a model directory) unless ``cfg["model"]`` names the model to load
(e.g. a hub reference such as StableLM-3B: ``{name_or_path, revision, dtype, trust_remote_code}``).
Outputs: ``scores`` (members + non-members); optional ``population`` (the RMIA population sample,
``cfg["population"]``: the config's ``evaluation.population``). The model tokenizes the manifest text with its own
tokenizer, so references with another vocabulary score the same examples.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.score_model(runtime.Job(snakemake))  # noqa: F821
