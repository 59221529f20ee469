"""Hub models and datasets for offline compute nodes: download once where the network is, run offline.

The ``download_hub`` rule (a local rule: it runs on the node that has the network) fetches every hub model
and the hub dataset a config names, at their pinned revisions, into the Hugging Face cache (``HF_HOME``,
or ``hub.cache``), and writes ``results/hub/downloads.json`` with the commit each name resolved to. Every
other job runs with ``HF_HUB_OFFLINE=1`` (``hub.offline``) and reads only that cache; a job whose model is
not in it stops with an error naming the model instead of waiting on the network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kdprivacy.config import Config
from kdprivacy.fields import is_local

log_ = logging.getLogger(__name__)
# Weights in formats no job here reads: never downloaded.
IGNORE_PATTERNS = [
    "*.msgpack", "*.h5", "*.ot", "*.tflite", "*.onnx", "onnx/*", "flax_model*", "tf_model*", "rust_model*",
    "coreml/*", "*.gguf", "original/*",
]


def snapshot_of(downloads: list[dict[str, Any]], repo_id: str, repo_type: str) -> dict[str, Any]:
    """The entry of ``downloads`` (``download_hub``'s output) for one hub name."""
    for entry in downloads:
        if entry["repo_id"] == repo_id and entry["repo_type"] == repo_type:
            return entry
    raise KeyError(f"{repo_type} {repo_id!r} is not in the hub downloads; rerun download_hub")


def model_entries(cfg: Config) -> list[dict[str, Any]]:
    """Every hub model of a config (bases and the external reference), once per (name, revision)."""
    seen: dict[tuple[str, str | None], dict[str, Any]] = {}
    specs = [spec for fam in cfg.families.values() for spec in fam.bases.values() if spec.name_or_path]
    ext = cfg.attacks.external_reference
    if ext is not None and ext.name_or_path and "ref_external" in cfg.attacks.names:
        specs.append(ext)
    for spec in specs:
        if is_local(spec.name_or_path):
            continue
        key = (spec.name_or_path, spec.revision)
        seen.setdefault(key, {"repo_id": spec.name_or_path, "revision": spec.revision, "repo_type": "model",
                              "trust_remote_code": spec.trust_remote_code})
    return list(seen.values())


def dataset_entries(cfg: Config) -> list[dict[str, Any]]:
    if cfg.data.source != "hub" or is_local(cfg.data.hub.name):
        return []
    return [{"repo_id": cfg.data.hub.name, "revision": cfg.data.hub.revision, "repo_type": "dataset"}]


def entries(cfg: Config) -> list[dict[str, Any]]:
    """What ``download_hub`` fetches for ``cfg`` (empty: the rule is not in the DAG)."""
    return model_entries(cfg) + dataset_entries(cfg)


def unpinned(cfg: Config) -> list[str]:
    """Hub names without a pinned ``revision`` (their content may change under the same name)."""
    return [e["repo_id"] for e in entries(cfg) if not e["revision"]]


def download(items: list[dict[str, Any]], cache_dir: str | None = None) -> list[dict[str, Any]]:
    """``snapshot_download`` each entry into ``cache_dir`` (None = the cache of ``HF_HOME``); returns the
    entries with ``commit`` (the resolved sha) and ``path`` (the snapshot directory).

    Call with the network on: this process clears ``HF_HUB_OFFLINE`` before importing huggingface_hub. Entries
    without a pinned revision are named in a warning: the commit they resolve to is recorded, but may change.
    """
    unpinned = [e["repo_id"] for e in items if not e["revision"]]
    if unpinned:
        log_.warning("no pinned revision for %s: the commit they resolve to now is recorded, but may change",
                     unpinned)
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ["HF_DATASETS_OFFLINE"] = "0"
    from huggingface_hub import snapshot_download

    out = []
    for item in items:
        log_.info("downloading %s %s at revision %s", item["repo_type"], item["repo_id"], item["revision"])
        try:
            path = snapshot_download(
                item["repo_id"], revision=item["revision"], repo_type=item["repo_type"], cache_dir=cache_dir,
                ignore_patterns=IGNORE_PATTERNS,
            )
        except Exception as err:  # the hub raises many types; each means this entry could not be fetched
            raise RuntimeError(
                f"could not download {item['repo_type']} {item['repo_id']!r} (revision {item['revision']}): {err}"
            ) from err
        commit = Path(path).name  # <cache>/<repo>/snapshots/<commit sha>
        if item["revision"] and len(item["revision"]) == 40 and item["revision"] != commit:
            raise RuntimeError(f"{item['repo_id']}: asked for commit {item['revision']}, got {commit}")
        out.append({**item, "commit": commit, "path": str(path)})
        log_.info("  -> commit %s in %s", commit, path)
    return out


def set_environment(hub_cfg) -> None:
    """The environment every job inherits: ``HF_HOME`` = ``hub.cache`` (absolute) when set, and the hub
    offline (``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1``) when ``hub.offline``; download_hub lifts it."""
    if hub_cfg.cache:
        os.environ["HF_HOME"] = os.path.abspath(os.path.expanduser(hub_cfg.cache))
    if hub_cfg.offline:
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def missing_message(name: str, revision: str | None, what: str = "model") -> str:
    """Why an offline job could not load a hub name, and what to run."""
    home = os.environ.get("HF_HOME") or os.environ.get("HF_HUB_CACHE") or "~/.cache/huggingface"
    return (
        f"{what} {name!r} (revision {revision}) is not in the Hugging Face cache ({home}) and this job runs "
        "offline (HF_HUB_OFFLINE=1): run `snakemake download_hub` where the network is (same HF_HOME / "
        "hub.cache), or point name_or_path at a local directory"
    )
