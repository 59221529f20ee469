# Memorization (the paper's metric): greedy decoding from the prompt, first k response tokens matched.


def memorization_cfg(wildcards):
    mem, ev = CFG.memorization, CFG.evaluation
    return {"first_k": mem.first_k, "max_members": mem.max_members, "max_nonmembers": mem.max_nonmembers,
            "batch_size": mem.batch_size, "sample_seed": ev.sample_seed, **data_lengths()}


rule memorization:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        per_example=f"{R}/{{family}}/seed{{seed}}/memorization/{{model}}.parquet",
    log:
        f"{R}/logs/memorization/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/memorization/{{family}}/seed{{seed}}/{{model}}.tsv"
    params:
        cfg=memorization_cfg,
        code=code("memorization.py", "memorization", "models"),
    threads: 4
    conda:
        ENV
    script:
        "../scripts/memorization.py"
