# Membership inference: one scoring pass per model over members and non-members, then every attack.


rule score_model:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        scores=f"{R}/{{family}}/seed{{seed}}/scores/{{model}}.parquet",
    log:
        f"{R}/logs/score_model/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/score_model/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: 4
    params:
        cfg=scoring_cfg,
        code=code("score_model.py", "scoring", "models"),
    script:
        "../scripts/score_model.py"


rule attack_metrics:
    input:
        scores=rules.score_model.output.scores,
        manifest=rules.prepare_data.output.manifest,
    output:
        per_example=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.parquet",
        metrics=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.metrics.csv",
    log:
        f"{R}/logs/attack_metrics/{{family}}/seed{{seed}}/{{model}}.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=dump(CFG.attacks),
        code=code("attack_metrics.py", "attacks", "metrics"),
    script:
        "../scripts/attack_metrics.py"
