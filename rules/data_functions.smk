# Input/param builders of rules/data.smk (Snakemake style: functions apart from rules).


def prepare_data_inputs(wildcards):
    """The data file (source file) or the hub download manifest (source hub); synthetic data has none."""
    if CFG.data.source == "file":
        return {"data": os.path.normpath(os.path.expanduser(CFG.data.file.path))}
    return {"hub": DOWNLOADS} if hub.dataset_entries(CFG) else {}


def hub_cfg():
    return {"entries": HUB_ENTRIES}


def data_source_cfg():
    """Only what decides the manifest: the active source and the split (not sequence lengths)."""
    data = dump(CFG.data)
    return {"source": data["source"], data["source"]: data[data["source"]], "split": data["split"]}
