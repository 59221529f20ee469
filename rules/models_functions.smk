# Input/param builders of rules/models.smk (Snakemake style: functions apart from rules).


def tokenizer_cfg(wildcards):
    return dump(FAMILIES[wildcards.family].tokenizer.train)


def pretrain_cfg(wildcards):
    fam = FAMILIES[wildcards.family]
    return {
        "spec": dump(fam.bases[wildcards.base].from_scratch),
        "train": dump(fam.pretrain.train),
        "pools": fam.pretrain.pools,
        "seed": fam.pretrain.seed,
        **data_lengths(),
    }
