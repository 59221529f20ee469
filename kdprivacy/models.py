"""Tokenizers and causal LMs: train a tokenizer, build tiny models from scratch, load (optionally quantized),
wrap for LoRA, merge and save.

Models built from scratch are plain Hugging Face GPT-2 / OPT / LLaMA configurations, so every later step
treats them exactly like pretrained checkpoints. Loading never reaches a hub by accident (a path-like
``name_or_path`` must exist; :mod:`kdprivacy.load_errors` says why a load failed). Only frozen models are quantized (bitsandbytes); a LoRA-trained model is
saved merged, with its adapter alone in ``<dir>/adapter/`` for provenance, and :func:`load_model` also
loads an adapter-only directory. Models load onto :func:`default_device`; :func:`autocast` is the compute
context of a precision (fp32 = none), trained weights stay float32 until :func:`to_dtype`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from kdprivacy.config import MODEL_REF_KEYS, FromScratch, Lora
from kdprivacy.load_errors import check_local, corrupt_error, load_error

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
ARCHITECTURES = ("gpt2", "opt", "llama")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTIZATIONS = (None, "8bit", "4bit")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # precision -> autocast dtype
ADAPTER_DIR = "adapter"
log_ = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- tokenizers
def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Byte-level BPE trained on ``texts``, wrapped as a transformers fast tokenizer.

    Special tokens come first (``<|endoftext|>`` = 0, ``<|pad|>`` = 1). The result depends only on the texts
    and settings (the BPE trainer breaks ties deterministically), so the same corpus gives the same vocab.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        list(texts),
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False):
    """``AutoTokenizer``; tokenizers without a pad token (GPT-2, LLaMA) get ``pad = eos``.

    Pad = EOS is safe here because every batch carries its own attention and response masks
    (:mod:`kdprivacy.encoding`): padding is never identified by comparing ids with ``pad_token_id``.
    """
    from transformers import AutoTokenizer

    check_local(name_or_path, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise OSError(load_error(name_or_path, revision, "tokenizer", err)) from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer {name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    """True when two tokenizers map every token to the same id (KD needs aligned logits)."""
    return len(tokenizer_a) == len(tokenizer_b) and tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def assert_same_vocabulary(tokenizer_a, tokenizer_b, what: str = "teacher and student") -> None:
    if not same_vocabulary(tokenizer_a, tokenizer_b):
        raise ValueError(
            f"{what} tokenizers differ (sizes {len(tokenizer_a)} vs {len(tokenizer_b)}); token-level KD needs "
            "a shared tokenizer/vocabulary"
        )


# ------------------------------------------------------------------------------------------------- models
def _model_config(spec: dict, tokenizer, max_positions: int):
    from transformers import GPT2Config, LlamaConfig, OPTConfig

    allowed = {"arch", "n_layer", "d_model", "n_head", "d_ff", "dropout"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"model spec has unknown keys {unknown}; allowed: {sorted(allowed)}")
    arch = spec.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    d_model, n_head = int(spec["d_model"]), int(spec["n_head"])
    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
    n_layer = int(spec["n_layer"])
    d_ff = int(spec.get("d_ff") or 4 * d_model)
    dropout = float(spec.get("dropout", 0.0))
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "gpt2":
        return GPT2Config(
            n_positions=max_positions, n_embd=d_model, n_layer=n_layer, n_head=n_head, n_inner=d_ff,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **ids,
        )
    if arch == "opt":
        return OPTConfig(
            hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=n_head, ffn_dim=d_ff,
            max_position_embeddings=max_positions, word_embed_proj_dim=d_model, dropout=dropout,
            attention_dropout=dropout, **ids,
        )
    return LlamaConfig(
        hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
        intermediate_size=d_ff, max_position_embeddings=max_positions, attention_dropout=dropout, **ids,
    )


def build_from_scratch(spec: FromScratch | dict, tokenizer, max_positions: int, seed: int):
    """A randomly initialised causal LM for ``spec``: the config's validated :class:`kdprivacy.config.FromScratch`
    block, or a dict ``{arch, n_layer, d_model, n_head, d_ff=4*d_model}``.

    ``arch`` is ``gpt2`` | ``opt`` | ``llama``; the vocabulary is ``len(tokenizer)`` with its bos/eos/pad ids.
    A dict may add ``dropout`` (default 0.0 for every architecture, so one spec means the same across
    families; tests use it, the config has no such key). Initialisation is seeded by ``seed`` without
    disturbing the caller's global torch RNG.
    """
    from transformers import AutoModelForCausalLM

    if isinstance(spec, FromScratch):
        spec = spec.model_dump(mode="json")
    config = _model_config(spec, tokenizer, int(max_positions))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = AutoModelForCausalLM.from_config(config)
    return model.float()


def default_device() -> torch.device:
    """``$KDPRIVACY_DEVICE`` if set; else ``cuda:$LOCAL_RANK`` (0 outside torchrun) when CUDA is available;
    else the CPU. Data-parallel ranks thus each load onto their own GPU."""
    env = os.environ.get("KDPRIVACY_DEVICE")
    if env:
        return torch.device(env)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """The compute context of a ``precision``: ``"fp32"`` -> no context at all (plain float32, bit-identical
    to code without it); ``"bf16"`` / ``"fp16"`` -> ``torch.autocast`` on ``device``'s type (CUDA or CPU)
    with that dtype: matmuls run in 16 bit, weights stay as stored. Enter it around forwards and losses
    only (never around ``backward``); log-probabilities are taken from ``logits.float()`` throughout."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    if device_type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16: this GPU has no bfloat16 support (pre-Ampere); use fp16 or fp32")
    return torch.autocast(device_type=device_type, dtype=dtype)


def to_dtype(model, dtype: str | None):
    """``model`` with its floating-point weights cast to ``dtype`` (``float32`` | ``bfloat16`` | ``float16``;
    None = float32), in place; a model already in that dtype is returned untouched (no copy, same bits)."""
    dtype = dtype or "float32"
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
    target = DTYPES[dtype]
    if all(p.dtype == target for p in model.parameters() if p.is_floating_point()):
        return model
    log_.info("casting %s to %s for saving", type(model).__name__, dtype)
    return model.to(target)


def quantization_config(quantization: str | None, dtype: str = "float32"):
    """``BitsAndBytesConfig`` for ``"8bit"`` (LLM.int8, outliers kept in 16 bit) or ``"4bit"`` (NF4, compute
    in ``dtype``; ``auto`` -> bfloat16 on CUDA, float32 on CPU); None for ``None``.

    The output embedding (``lm_head``) stays unquantized (transformers' default), so logits keep full width.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of {list(QUANTIZATIONS)}")
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = DTYPES.get(dtype) or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


def is_quantized(model) -> bool:
    """True for a model loaded with bitsandbytes quantization (frozen: it cannot be trained or moved)."""
    return bool(
        getattr(model, "is_quantized", False)
        or getattr(model, "hf_quantizer", None) is not None
        or getattr(model, "is_loaded_in_8bit", False)
        or getattr(model, "is_loaded_in_4bit", False)
    )


def load_model(
    name_or_path: str,
    revision: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    quantization: str | None = None,
    device: str | torch.device | None = None,
    compute_dtype: str | None = None,
):
    """``AutoModelForCausalLM`` in eval mode on ``device`` (None = :func:`default_device`).

    ``dtype`` is ``float32`` | ``float16`` | ``bfloat16`` | ``auto``; ``quantization`` is None | ``"8bit"`` |
    ``"4bit"`` (frozen models, or a QLoRA base, see :func:`quantization_config`); ``compute_dtype`` is the
    4-bit compute dtype (None = ``dtype``; ``"auto"`` = bfloat16 on CUDA, float32 on CPU). A directory
    holding only a LoRA adapter (``adapter_config.json``, no ``config.json``) is loaded as its base plus the
    merged adapter.
    """
    from transformers import AutoModelForCausalLM

    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {[*DTYPES, 'auto']}")
    qconfig = quantization_config(quantization, compute_dtype or dtype)
    check_local(name_or_path, "model")
    device = torch.device(device) if device is not None else default_device()
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        if (path / "adapter_config.json").is_file():
            return _load_adapter_dir(path, dtype, trust_remote_code, quantization, device)
        raise ValueError(f"{str(path)!r} is not a model directory (no config.json)")
    kwargs = {
        "revision": revision,
        "dtype": DTYPES.get(dtype, "auto"),
        "trust_remote_code": trust_remote_code,
    }
    if qconfig is not None:
        # bitsandbytes layers are placed at load time and cannot be moved afterwards
        kwargs.update(quantization_config=qconfig, device_map={"": str(device)})
        _log_once("bitsandbytes.autograd._functions")  # warns on every 8-bit matmul
    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except SafetensorError as err:
        raise corrupt_error(name_or_path, revision, err) from err
    except OSError as err:
        raise OSError(load_error(name_or_path, revision, "model", err)) from err
    if qconfig is None and device.type != "cpu":
        model.to(device)
    model.eval()
    log_.info(
        "loaded %s: %s, %.3g parameters, dtype %s, device %s, quantization %s", name_or_path,
        type(model).__name__, sum(p.numel() for p in model.parameters()), next(model.parameters()).dtype, device,
        quantization,
    )
    return model


class _Once(logging.Filter):
    """Let each distinct message of a logger through once (bitsandbytes warns on every 8-bit matmul)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _log_once(name: str) -> None:
    target = logging.getLogger(name)
    if not any(isinstance(f, _Once) for f in target.filters):
        target.addFilter(_Once())


def _load_adapter_dir(path: Path, dtype, trust_remote_code, quantization, device):
    """A PEFT adapter directory: its base (``base_model_name_or_path``) + the adapter, merged."""
    from peft import PeftModel

    if quantization is not None:
        raise ValueError(
            f"{str(path)!r} is a LoRA adapter; merge it into full-precision weights before "
            "quantizing (save the merged model and load that)"
        )
    base_name = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base_name:
        raise ValueError(f"{str(path)!r}: adapter_config.json names no base_model_name_or_path")
    base = load_model(base_name, dtype=dtype, trust_remote_code=trust_remote_code, device=device)
    from safetensors import SafetensorError

    try:
        with _quiet_peft():
            model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    except SafetensorError as err:
        raise corrupt_error(str(path), None, err) from err
    model.eval()
    return model


def load_base(cfg: dict, device: str | torch.device | None = None, compute_dtype: str | None = None):
    """``(model, tokenizer)`` from a model ref ``{"name_or_path", "revision", "dtype", "trust_remote_code",
    "quantization"}`` (all but ``name_or_path`` optional; ``quantization`` only for frozen models);
    ``compute_dtype``: see :func:`load_model`."""
    unknown = sorted(set(cfg) - set(MODEL_REF_KEYS))
    if unknown:
        raise ValueError(f"model config has unknown keys {unknown}; allowed: {sorted(MODEL_REF_KEYS)}")
    name = cfg["name_or_path"]
    revision = cfg.get("revision")
    remote = bool(cfg.get("trust_remote_code", False))
    model = load_model(
        name,
        revision=revision,
        dtype=cfg.get("dtype") or "float32",
        trust_remote_code=remote,
        quantization=cfg.get("quantization"),
        device=device,
        compute_dtype=compute_dtype,
    )
    tokenizer = load_tokenizer(name, revision=revision, trust_remote_code=remote)
    return model, tokenizer


def refuse_quantized(cfg: dict, what: str) -> None:
    """Trained models are loaded in full precision: a ``quantization`` on their ref is a config error."""
    if (cfg or {}).get("quantization") is not None:
        raise ValueError(
            f"{what} is trained and cannot be loaded quantized ({cfg['quantization']!r}); "
            "quantization is for frozen models (the KD teacher, teacher generation)"
        )


# --------------------------------------------------------------------------------------------------- LoRA
def apply_lora(model, lora: Lora | None, seed: int = 0):
    """``model`` wrapped by peft for LoRA training (only the adapter is trainable); unchanged for None.

    ``lora.target_modules`` None is peft's default for the architecture (GPT-2 ``c_attn``, OPT/LLaMA
    ``q_proj, v_proj``); ``"all-linear"`` is every linear layer but the output head.

    The adapter's random initialisation is seeded by ``seed`` without touching the caller's RNG. QLoRA
    (``lora.quantization`` set): ``model`` must be loaded with that quantization; it is prepared with
    ``peft.prepare_model_for_kbit_training`` (base frozen, its remaining 16-bit weights in float32; gradient
    checkpointing is left to ``train.gradient_checkpointing``) before the adapter is added.
    """
    if lora is None:
        return model
    if lora.target_modules == []:
        raise ValueError("lora.target_modules must be null, 'all-linear' or a non-empty list of names")
    quantized = is_quantized(model)
    if quantized and lora.quantization is None:
        raise ValueError(
            "LoRA training on a quantized base needs lora.quantization (QLoRA: the adapter is merged into "
            "the base reloaded in full precision); otherwise load the base unquantized"
        )
    if lora.quantization is not None and not quantized:
        raise ValueError(
            f"lora.quantization is {lora.quantization!r} but the base was loaded unquantized; load it "
            f"with quantization={lora.quantization!r} (train.jobs.load_trainable does)"
        )
    from peft import LoraConfig, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        for module in model.modules():
            # bitsandbytes repacks 4-bit CPU weights for inference at the first eval forward (the dev loss);
            # later training forwards then take an inference-only kernel path that fails on layers with a bias
            if getattr(module, "support_avx512bf16_for_cpu", False):
                module.support_avx512bf16_for_cpu = False
    model_type = getattr(model.config, "model_type", "")
    config = LoraConfig(
        r=int(lora.r),
        lora_alpha=float(lora.alpha),
        lora_dropout=float(lora.dropout),
        target_modules=lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
        # GPT-2's Conv1D stores weights transposed (bitsandbytes replaces them by ordinary quantized linears)
        fan_in_fan_out=model_type == "gpt2" and not quantized,
    )
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), _quiet_peft():
        torch.manual_seed(int(seed))
        peft_model = get_peft_model(model, config)
    return peft_model


@contextlib.contextmanager
def _quiet_peft():
    """peft calls a transformers property that transformers 5 deprecates; that warning is not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_lora(model) -> bool:
    """True for a peft-wrapped model (cheap: never imports peft itself)."""
    if "peft" not in sys.modules:
        return False
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merge_lora(model, base_ref: dict | None = None):
    """A LoRA-wrapped model merged into plain weights (the adapter is kept, see :func:`lora_adapter`, and
    written by :func:`save_model` to ``<dir>/adapter``); any other model is returned unchanged.

    QLoRA (the wrapped base is quantized): merging into quantized weights would round the result to the
    quantization grid, so ``base_ref`` (the model ref the base was loaded from) is reloaded **unquantized**,
    in its ``dtype``, on the CPU, the trained adapter weights are loaded into a peft wrapper of it and merged
    there: the result is an ordinary full-precision checkpoint (on the CPU) equal to base + adapter.
    """
    if not is_lora(model):
        return model
    from peft import get_peft_model_state_dict

    config = model.peft_config["default"]
    state = {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in get_peft_model_state_dict(model).items()
    }
    was_training = model.training
    if is_quantized(model.get_base_model()):
        if base_ref is None:
            raise ValueError(
                "this LoRA adapter was trained on a quantized base (lora.quantization): pass base_ref so the "
                "base is reloaded in full precision for the merge"
            )
        merged, config = _merge_into_full_precision(config, state, base_ref)
    else:
        with _quiet_peft():
            merged = model.merge_and_unload()
    merged.train(was_training)
    merged._kdprivacy_lora_adapter = (config, state)
    return merged


def _merge_into_full_precision(config, state: dict, base_ref: dict):
    """``(merged model, adapter config)``: ``state`` (adapter weights trained on a quantized base) merged
    into ``base_ref`` loaded unquantized on the CPU; the config is re-targeted at the full-precision layers
    (GPT-2's Conv1D: ``fan_in_fan_out``)."""
    import copy

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    ref = {**base_ref, "quantization": None}
    base = load_model(
        ref["name_or_path"], revision=ref.get("revision"), dtype=ref.get("dtype") or "float32",
        trust_remote_code=bool(ref.get("trust_remote_code", False)), device="cpu",
    )
    full = copy.deepcopy(config)
    full.fan_in_fan_out = getattr(base.config, "model_type", "") == "gpt2"
    full.inference_mode = False
    with torch.random.fork_rng(devices=[]), _quiet_peft():  # the fresh adapter is overwritten below
        peft_model = get_peft_model(base, full)
    expected = set(get_peft_model_state_dict(peft_model))
    if expected != set(state):
        raise RuntimeError(
            f"QLoRA merge: the adapter does not fit the full-precision base ({len(expected ^ set(state))} "
            f"mismatched tensors, e.g. {sorted(expected ^ set(state))[:3]})"
        )
    set_peft_model_state_dict(peft_model, state)
    with _quiet_peft():
        merged = peft_model.merge_and_unload()
    log_.info("QLoRA: adapter merged into %s reloaded unquantized (%s, CPU)", ref["name_or_path"],
              next(merged.parameters()).dtype)
    return merged.eval(), full


def lora_adapter(model):
    """``(peft LoraConfig, adapter state dict)`` of a model made by :func:`merge_lora`, else None."""
    return getattr(model, "_kdprivacy_lora_adapter", None)


def save_adapter(config, state: dict, out_dir) -> None:
    """An adapter directory in peft's format (``PeftModel.from_pretrained`` loads it)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    # peft keeps target_modules as a set and writes it in hash order, which changes from one process to the
    # next (PYTHONHASHSEED): sort it, so the same adapter is the same bytes
    path = out / "adapter_config.json"
    saved = json.loads(path.read_text())
    if isinstance(saved.get("target_modules"), list):
        saved["target_modules"] = sorted(saved["target_modules"])
        path.write_text(json.dumps(saved, indent=2, sort_keys=True))
    save_file(state, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})




def set_gradient_checkpointing(model, enabled: bool) -> None:
    """Turn transformers' activation (gradient) checkpointing of ``model`` on (non-reentrant
    ``torch.utils.checkpoint``) or off. While on, the input embeddings' outputs require grad (peft's recipe
    for a frozen base under LoRA); turning it off removes that hook again. Results do not change: the
    recomputed forward replays the same RNG state (dropout)."""
    hf = model.get_base_model() if is_lora(model) else model
    if not getattr(hf, "supports_gradient_checkpointing", False):
        raise ValueError(f"train.gradient_checkpointing: {type(hf).__name__} does not support it")
    kwargs = {"use_reentrant": False}
    if enabled:
        if hasattr(hf, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name is deprecated
            hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        # transformers adds the input-grad hook itself when it enables checkpointing: never add it twice
        if not (getattr(hf, "_require_grads_hooks", None) or getattr(hf, "_require_grads_hook", None)):
            hf.enable_input_require_grads()
    else:
        if hasattr(hf, "activation_checkpointing_disable"):
            hf.activation_checkpointing_disable()
        else:
            hf.gradient_checkpointing_disable()
        hf.disable_input_require_grads()


def save_model(model, tokenizer, out_dir) -> None:
    """Weights (safetensors), config, generation config and tokenizer into ``out_dir``.

    The caller makes it atomic by passing the temporary directory of :func:`kdprivacy.io.atomic_dir`.
    A model that was trained with LoRA must be merged first (:func:`merge_lora`); its adapter goes to
    ``out_dir/adapter`` as well.
    """
    if is_lora(model):
        raise ValueError(
            "merge the LoRA adapter (models.merge_lora) before saving: outputs are merged checkpoints"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    adapter = lora_adapter(model)
    if adapter is not None:
        save_adapter(*adapter, out / ADAPTER_DIR)
