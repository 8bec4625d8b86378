"""Model resolution: aliases, local directories, hub ids, unknown specs; the real SmolLM2 chats."""


import pytest
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.models import ModelResolutionError, resolve_model


def test_local_directory_and_hub_id_pass_through(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_unknown_spec_and_directory_without_config_fail_clearly(tmp_path):
    with pytest.raises(ModelResolutionError, match="unknown model 'nonsense'"):
        resolve_model("nonsense")
    with pytest.raises(ModelResolutionError, match="has no config.json"):
        resolve_model(str(tmp_path))
    result = CliRunner().invoke(cli, ["models", "pull", "nonsense"])
    assert result.exit_code != 0 and "unknown model" in result.output and "Traceback" not in result.output


def test_tiny_fixture_model_generates_from_chat_template(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "1+1?"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.slow
def test_smollm2_alias_is_cached_as_safetensors_and_answers(smollm2_dir):
    """The GGUF is converted once: later loads read safetensors (load time is measured in reports/bench_models.md)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (smollm2_dir / "model.safetensors").is_file()
    assert resolve_model("smollm2-135m") == str(smollm2_dir)  # second call reuses the cache
    assert not list(smollm2_dir.glob("*.gguf"))  # no second copy of the weights to convert again
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.chat_template
    # a turn ends with <|im_end|> (the GGUF names <|im_start|>), padding uses it, no BPE space clean-up warning
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert tokenizer.pad_token == tokenizer.eos_token
    assert tokenizer.clean_up_tokenization_spaces is False
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in reply


def test_a_model_cached_by_an_older_build_is_rebuilt(tmp_path, monkeypatch):
    """A conversion change bumps BUILD_VERSION; a cache without it must not be trusted."""
    from curriculum import models

    monkeypatch.setenv("CURRICULUM_CACHE", str(tmp_path))
    stale = tmp_path / "models" / "smollm2-135m"
    stale.mkdir(parents=True)
    (stale / models._COMPLETE_MARKER).write_text("built by an older curriculum\n")

    class Rebuilt(Exception):
        pass

    def extract(alias, scratch):
        raise Rebuilt(alias.name)

    monkeypatch.setattr(models, "_extract_gguf", extract)
    with pytest.raises(Rebuilt):
        resolve_model("smollm2-135m")
    (stale / models._COMPLETE_MARKER).write_text(f"x\nbuild {models.BUILD_VERSION}\n")
    assert resolve_model("smollm2-135m") == str(stale)  # current build: reused as is
