# Base models: a byte-level BPE tokenizer and language pretraining for from-scratch families.
# Hub/local bases need neither rule: jobs load them by name (see base_ref in common.smk).


rule train_tokenizer:
    input:
        manifest=rules.prepare_data.output.manifest,
    output:
        dir=directory(f"{R}/{{family}}/tokenizer"),
    log:
        f"{R}/logs/train_tokenizer/{{family}}.log",
    conda:
        ENV
    params:
        cfg=tokenizer_cfg,
        code=code("train_tokenizer.py", "models", "train.jobs"),
    script:
        "../scripts/train_tokenizer.py"


rule pretrain_base:
    input:
        manifest=rules.prepare_data.output.manifest,
        tokenizer=rules.train_tokenizer.output.dir,
    output:
        dir=directory(f"{R}/{{family}}/base/{{base}}"),
    log:
        f"{R}/logs/pretrain_base/{{family}}/{{base}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain_base/{{family}}/{{base}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("pretrain_base"),
        runtime=runtime("pretrain_base"),
        gpu=gpus("pretrain_base"),
    params:
        cfg=pretrain_cfg,
        code=code("pretrain_base.py", "models", "train.jobs", "checkpoint"),
    script:
        "../scripts/pretrain_base.py"
