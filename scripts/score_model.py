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

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import config, encoding, io, models, provenance  # noqa: E402
from kdprivacy.mia import scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821
out = dict(snakemake.output.items())  # noqa: F821
short_tokens = cfg["short_tokens"]

manifest = pd.read_parquet(inp["manifest"])
evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
n_members = int((evaluation.label == 1).sum())
log.info("evaluation set: %d members, %d non-members", n_members, len(evaluation) - n_members)

if cfg["model"] is not None:
    model, tokenizer = models.load_base(cfg["model"])
    source = cfg["model"]["name_or_path"]
else:
    tokenizer = models.load_tokenizer(inp["model"])
    model = models.load_model(inp["model"])
    source = inp["model"]
model.to(scoring.inference_device())
log.info("model %s (%s, vocabulary %d)", source, type(model).__name__, len(tokenizer))


def score(frame: pd.DataFrame, keep: list[str], what: str) -> pd.DataFrame:
    items = encoding.encode_frame(tokenizer, frame, cfg["max_length"], cfg["max_prompt_length"])
    scores = scoring.score_examples(
        model, items, batch_size=cfg["batch_size"], pad_id=tokenizer.pad_token_id, precision=cfg["precision"]
    )
    table = frame[keep].merge(scores, on="id", how="left", validate="one_to_one")
    if len(table) != len(frame) or table["n_tokens"].isna().any():
        raise RuntimeError(f"scoring lost {what} examples")
    counts = scoring.short_counts(table["n_tokens"], short_tokens)
    log.info(
        "%s: scored %d examples, %d response tokens; %d with no scored token, %d short (< %d tokens)",
        what, counts["n_examples"], int(table.n_tokens.sum()), counts["n_empty"], counts["n_short"],
        short_tokens,
    )
    if counts["n_empty"]:
        log.warning("%s: %d example(s) have no scored token: every attack on them is NaN and the metrics "
                    "will refuse them", what, counts["n_empty"])
    return table


io.write_parquet(score(evaluation, ["id", "label", "category"], "evaluation set"), out["scores"])
params = {"cfg": cfg, "code": snakemake.params.code}  # noqa: F821
inputs = {k: v for k, v in inp.items() if k in ("manifest", "model")}
rule = snakemake.rule  # noqa: F821
provenance.write(f"{out['scores']}.provenance.json", params=params, inputs=inputs, rule=rule)

if "population" in out:
    pop = config.Population.model_validate(cfg["population"])
    population = scoring.population_set(manifest, pop.pools, pop.max_examples, pop.seed)
    io.write_parquet(score(population, ["id", "pool", "category"], "population"), out["population"])
    provenance.write(f"{out['population']}.provenance.json", params=params, inputs=inputs, rule=rule)
