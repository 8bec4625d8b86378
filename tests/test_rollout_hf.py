"""The hf engine on the tiny offline model: shapes, batching that does not change answers, seeds, stops."""

from __future__ import annotations

import json
import shutil

import pytest

from curriculum.prompts import DEFAULT_TEMPLATE
from curriculum.rollout import RolloutError, Sampling, get_engine
from curriculum.rollout.hf import HFEngine

PROBLEMS = ["What is 1 + 1?", "Compute 12 * 7 - 3, then add the digits of the result together.", "2?",
            "A farmer has 17 sheep and all but 9 run away. How many are left?", "What is 100 - 1?"]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    # fp32: the equivalence tests compare batched and single generation token for token, which bf16's
    # shape-dependent rounding would blur on machines where the default is bf16 (AMX)
    engine = HFEngine(str(tiny_model_dir), batch_size=4, dtype="fp32")
    yield engine
    engine.close()


def prompts(count=len(PROBLEMS)):
    return [DEFAULT_TEMPLATE.messages(problem) for problem in PROBLEMS[:count]]


def test_returns_n_completions_per_prompt_in_prompt_order(engine):
    out = engine.generate(prompts(), 3, Sampling(max_tokens=12, seed=1))
    assert len(out) == len(PROBLEMS)
    for group in out:
        assert len(group) == 3
        for completion in group:
            assert 1 <= completion.num_tokens <= 12
            assert completion.finish_reason in ("stop", "length")
            assert (completion.finish_reason == "length") == (completion.num_tokens == 12 and completion.truncated)
            assert isinstance(completion.text, str)


def test_batching_and_shared_prompt_cache_give_plain_generate_answers(engine):
    # Left padding, length sorting, one prompt pass shared by its samples, and samples split across batches
    # (n = 6 > batch_size = 4) must not change what each prompt generates: compare greedy answers with a
    # plain `model.generate` of each prompt alone.

    greedy = Sampling(temperature=0.0, max_tokens=10)
    batched = engine.generate(prompts(), 6, greedy)
    for index, messages in enumerate(prompts()):
        alone = engine._completion(_plain_tokens(engine, [messages], 1, greedy)[0], 10)
        assert [c.text for c in batched[index]] == [alone.text] * 6
        assert batched[index][0].num_tokens == alone.num_tokens


def test_same_seed_same_samples_other_seed_other_samples(engine):
    first = engine.generate(prompts(2), 4, Sampling(max_tokens=12, seed=7, temperature=1.0))
    again = engine.generate(prompts(2), 4, Sampling(max_tokens=12, seed=7, temperature=1.0))
    other = engine.generate(prompts(2), 4, Sampling(max_tokens=12, seed=8, temperature=1.0))
    texts = lambda out: [c.text for group in out for c in group]  # noqa: E731
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


def test_completion_stops_at_end_of_sequence_and_counts_it(engine):
    eos = engine.eos_ids[0]
    a, b = engine.tokenizer.convert_tokens_to_ids(["4", "2"])
    stopped = engine._completion([a, b, eos, engine.pad_id, engine.pad_id], max_tokens=5)
    assert (stopped.text, stopped.num_tokens, stopped.finish_reason) == ("42", 3, "stop")
    cut = engine._completion([a, b, a], max_tokens=3)
    assert (cut.text, cut.num_tokens, cut.finish_reason) == ("424", 3, "length")


def test_batch_size_from_free_memory_is_bounded(tiny_model_dir):
    engine = HFEngine(str(tiny_model_dir))
    size = engine.pick_batch_size(max_prompt_tokens=400, max_new_tokens=512)
    assert 1 <= size <= 64
    assert engine.mode == "padded"  # CPU default
    out = engine.generate(prompts(2), 2, Sampling(max_tokens=4))
    assert [len(group) for group in out] == [2, 2]


def test_continuous_batching_mode_returns_every_sample(tiny_model_dir):
    engine = HFEngine(str(tiny_model_dir), mode="continuous")
    out = engine.generate(prompts(3), 2, Sampling(max_tokens=6, seed=3))
    assert [len(group) for group in out] == [2, 2, 2]
    assert all(1 <= c.num_tokens <= 6 for group in out for c in group)


def test_model_without_chat_template_is_a_clear_error(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    config_path = plain / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(RolloutError, match="no chat template"):
        get_engine("hf", str(plain))


def test_factory_rejects_unknown_engines_and_options(tiny_model_dir):
    with pytest.raises(RolloutError, match="unknown engine"):
        get_engine("tgi", str(tiny_model_dir))
    with pytest.raises(RolloutError, match="unknown option.*batchsize.*accepted: .*batch_size"):
        get_engine("hf", str(tiny_model_dir), batchsize=4)


def test_dtype_names_and_the_cpu_default(tiny_model_dir):
    import torch

    from curriculum.hardware import cpu_has_native_bf16
    from curriculum.rollout.hf import _pick_dtype

    cpu = torch.device("cpu")
    assert [_pick_dtype(name, cpu) for name in ("fp32", "bf16", "float16")] == [
        torch.float32, torch.bfloat16, torch.float16]
    with pytest.raises(ValueError, match="unknown dtype 'fp33'"):
        _pick_dtype("fp33", cpu)
    assert _pick_dtype(None, cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert HFEngine(str(tiny_model_dir), dtype="fp32").model.dtype == torch.float32



def _plain_tokens(engine, messages_list, n, sampling):
    """`model.generate` on every prompt repeated n times, left padded: the reference for the engine's loop."""
    import torch

    rows = [engine.encode(messages) for messages in messages_list for _ in range(n)]
    width = max(map(len, rows))
    ids = torch.tensor([[engine.pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    torch.manual_seed(sampling.seed)
    output = engine.model.generate(input_ids=ids, attention_mask=mask, generation_config=engine._generation_config(sampling))
    return [row[width:].tolist() for row in output]


def test_own_sampling_loop_draws_what_generate_draws_with_the_same_seed(tiny_model_dir):
    # temperature and top-p as transformers applies them: with one batch of equal-length prompts and no row
    # leaving the batch (max_tokens <= the drop interval), the same seed gives the same tokens
    from curriculum.rollout.hf import _DROP_FINISHED_EVERY

    engine = HFEngine(str(tiny_model_dir), batch_size=64, dtype="fp32")
    same_length = [DEFAULT_TEMPLATE.messages(p) for p in ("What is 1 + 1?", "What is 3 + 4?", "What is 5 + 2?")]
    for sampling in (Sampling(temperature=0.9, top_p=0.8, max_tokens=_DROP_FINISHED_EVERY, seed=3),
                     Sampling(temperature=1.3, top_p=1.0, max_tokens=_DROP_FINISHED_EVERY, seed=4)):
        ours = [c.text for group in engine.generate(same_length, 4, sampling) for c in group]
        reference = [engine._completion(row, sampling.max_tokens).text
                     for row in _plain_tokens(engine, same_length, 4, sampling)]
        assert ours == reference
        assert len(set(ours)) > 1  # really sampled, not one greedy answer repeated


def test_rows_that_finish_early_leave_the_batch_without_changing_the_others(tiny_model_dir, monkeypatch):
    # The tiny model's small random weights give every prompt the same greedy answer; redrawn larger, its
    # answers depend on the prompt and end (at its end-of-sequence token) after different numbers of steps.
    # Dropping finished rows every step, every 3 steps, or never must give the same greedy answers, and each
    # must match plain `generate` of that prompt alone.
    import torch

    engine = HFEngine(str(tiny_model_dir), batch_size=64, dtype="fp32")
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in (p for p in engine.model.parameters() if p.dim() == 2):
            weight.normal_(0.0, 0.3)
    greedy = Sampling(temperature=0.0, max_tokens=12)
    answers = {}
    for every in (1, 3, 1000):
        monkeypatch.setattr("curriculum.rollout.hf._DROP_FINISHED_EVERY", every)
        answers[every] = [(c.text, c.num_tokens, c.finish_reason) for g in engine.generate(prompts(), 2, greedy)
                          for c in g]
    assert answers[1] == answers[3] == answers[1000]
    lengths = sorted({num_tokens for _, num_tokens, reason in answers[1] if reason == "stop"})
    assert len(lengths) >= 3 and lengths[-1] > 3  # rows ended at different steps, some after a drop
    for index, messages in enumerate(prompts()):
        alone = engine._completion(_plain_tokens(engine, [messages], 1, greedy)[0], 12)
        assert answers[1][2 * index][:2] == answers[1][2 * index + 1][:2] == (alone.text, alone.num_tokens)


def test_top_p_keeps_the_tokens_a_full_sort_keeps(tiny_model_dir):
    # The nucleus is found among the most likely candidates, with a full sort for rows whose nucleus reaches
    # past them: sharp rows (nucleus of a few tokens), flat rows (thousands) and rows in between.
    import torch

    from curriculum.rollout.hf import _NUCLEUS_CANDIDATES, _outside_nucleus

    torch.manual_seed(0)
    logits = torch.randn(300, 4096) * torch.logspace(-1, 1.5, 300)[:, None]
    for top_p in (0.5, 0.95):
        ordered, order = torch.sort(logits, descending=False)  # transformers' top-p filter, written out
        below = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        below[..., -1] = False
        reference = below.scatter(-1, order, below)
        ours = _outside_nucleus(logits, top_p)
        assert torch.equal(ours, reference)
        kept = (~ours).sum(dim=-1)
        assert kept.min() == 1 and kept.max() > _NUCLEUS_CANDIDATES  # both paths were taken


def test_grouped_query_attention_gives_the_logits_of_transformers_sdpa(tiny_model_dir):
    # The engine's attention lays grouped query heads side by side instead of copying key/value heads: with
    # left padding, over a padded prompt (a causal mask per position) and one cached decoding step, it must
    # give what transformers' own `sdpa` gives.
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from curriculum.rollout.hf import GQA_SDPA, _load_model

    stock = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    ours = _load_model(str(tiny_model_dir), torch.float32, grouped_sdpa=True)
    assert ours.config._attn_implementation == GQA_SDPA
    assert stock.config.num_attention_heads > stock.config.num_key_value_heads  # really grouped
    torch.manual_seed(1)
    with torch.no_grad():  # weights large enough that attention patterns differ between positions
        for a, b in zip(stock.parameters(), ours.parameters(), strict=True):
            if a.dim() == 2:
                a.normal_(0.0, 0.3)
                b.copy_(a)
    ids = torch.randint(5, stock.config.vocab_size, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4], mask[1, :1] = 0, 0  # left padding of different widths
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = []
    with torch.inference_mode():
        for model in (stock, ours):
            cache = DynamicCache(config=model.config)
            prefill = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache).logits
            step = model(input_ids=ids[:, -1:], attention_mask=torch.cat([mask, mask[:, :1] * 0 + 1], dim=-1),
                         position_ids=positions[:, -1:] + 1, past_key_values=cache).logits
            logits.append((prefill[mask.bool()], step))
    torch.testing.assert_close(logits[0][0], logits[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[0][1], logits[1][1], rtol=1e-4, atol=1e-5)
