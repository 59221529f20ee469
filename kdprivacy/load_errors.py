"""Why a model or tokenizer did not load, said so that the fix is plain: a local-looking path that does not
exist (never a silent hub lookup), a hub name missing from an offline cache, a corrupt or truncated
safetensors file (which file, and how to get a good copy). Used by :mod:`kdprivacy.models`' loaders.
"""

from __future__ import annotations

from pathlib import Path

from kdprivacy.fields import is_local, looks_like_path


def check_local(name_or_path: str, what: str) -> None:
    """A local-looking path must be an existing directory (never fall through to a hub lookup)."""
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} path {str(path)!r} is not a directory")
        return
    if looks_like_path(str(name_or_path)):
        raise FileNotFoundError(f"{what} directory {str(name_or_path)!r} does not exist")


def load_error(name_or_path: str, revision: str | None, what: str, err: Exception) -> str:
    """The message for a failed ``from_pretrained``: on an offline node, which cache lacks which hub name."""
    from kdprivacy import hub

    if hub.offline() and not is_local(str(name_or_path)):
        return f"{hub.missing_message(str(name_or_path), revision, what)} ({type(err).__name__}: {err})"
    return f"cannot load {what} {str(name_or_path)!r} (revision {revision}): {err}"


def weights_dir(name_or_path: str, revision: str | None) -> Path | None:
    """The directory a model's weights are read from: the local directory, or its hub cache snapshot."""
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(str(name_or_path), "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - only for a better message
        return None
    return Path(found).parent if isinstance(found, str) else None


def corrupt_files(directory: Path | None) -> list[str]:
    """The ``*.safetensors`` files under ``directory`` whose header or size is broken (truncated, garbled)."""
    from safetensors import safe_open

    bad = []
    for file in sorted(directory.rglob("*.safetensors")) if directory is not None else []:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as err:  # noqa: BLE001 - SafetensorError, OSError: either way unreadable
            bad.append(f"{file} ({err})")
    return bad


def corrupt_error(name_or_path: str, revision: str | None, err: Exception) -> OSError:
    """The error for weights safetensors cannot read: which file is corrupt, and what to do about it."""
    bad = corrupt_files(weights_dir(name_or_path, revision))
    which = "; ".join(bad) if bad else f"a weights file of {str(name_or_path)!r} ({err})"
    fix = (
        "Rerun the job that wrote it (delete the directory first), or copy it again"
        if is_local(str(name_or_path))
        else "Delete it from the Hugging Face cache and fetch it again (snakemake download_hub)"
    )
    return OSError(f"cannot load model {str(name_or_path)!r}: corrupt or truncated weights: {which}. {fix}")
