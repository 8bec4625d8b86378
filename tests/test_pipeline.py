"""The pipeline: recipes validated at the door, stages run in order, skipped when done, resumed, refused when stale."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.pipeline import STAGES, Pipeline, PipelineError, config_from_dict, load_config, score_config

REPO = Path(__file__).resolve().parents[1]


TINY_PROMPT = {"system": "Reason, then answer in \\boxed{}.", "instruction": "Q: {problem}"}


def tiny_recipe(model_dir: Path, out: Path, problems_file: Path) -> dict:
    """A whole pipeline on the tiny model and 12 synthetic problems: seconds per stage."""
    return {
        "name": "tiny",
        "out": str(out),
        "model": str(model_dir),
        "prompt": TINY_PROMPT,
        "data": {"sources": ["synthetic"], "synth": {"n": 12, "seed": 0}, "eval_sets": []},
        "score": {"samples": 2, "max_tokens": 8, "seed": 0},
        "build": {"buckets": 2, "drop_unsolved": False, "heldout": 4},
        "train": {"schedule": "linear", "max_steps": 2, "num_generations": 2, "fast_generation": "off",
                  "grpo": {"max_completion_length": 8, "per_device_train_batch_size": 2, "save_steps": 1,
                           "report_to": "none"}},
        "eval": {"benchmarks": [str(problems_file)], "samples": 2, "max_tokens": 8},
    }


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    problems = root / "mini.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                                for i in range(3)))
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_model_dir, root / "run", problems)))
    events = []
    outcomes = Pipeline(load_config(recipe)).run(on_event=lambda kind, stage, message: events.append((kind, stage)))
    return recipe, root / "run", outcomes, events


def test_train_launch_runs_two_cooperating_processes(tiny_model_dir, tmp_path):
    """`train.launch.num_processes: 2` trains under accelerate with two ranks (gloo on a CPU machine)."""
    problems = tmp_path / "mini.jsonl"
    problems.write_text(json.dumps({"problem": "What is 1 + 1?", "answer": "2"}) + "\n")
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", problems)
    recipe["build"]["heldout"] = 0
    recipe["train"]["launch"] = {"num_processes": 2}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    outcomes = {o.name: o.action for o in Pipeline(load_config(path)).run(until="train")}
    assert outcomes["train"] == "ran"
    state = json.loads((tmp_path / "run" / "train" / "checkpoint-2" / "curriculum_state.json").read_text())
    assert state["chunk"][0] == 2  # 2 ranks x 2 completions / 2 per group; one process would draw 1 problem


def test_first_run_runs_every_stage_in_order_and_leaves_a_report(finished_run):
    _, run, outcomes, events = finished_run
    assert [o.name for o in outcomes] == list(STAGES)
    assert all(o.action == "ran" for o in outcomes)
    assert [stage for kind, stage in events if kind == "start"] == list(STAGES)
    for name in ("problems.parquet", "scores.parquet", "buckets/manifest.json", "heldout/manifest.json",
                 "train/config.json", "train/metrics.jsonl", "eval_before.json", "eval_after.json",
                 "report/report.md", "report/report.html", "config.yaml"):
        assert (run / name).exists(), name
    after = json.loads((run / "eval_after.json").read_text())
    assert set(after["benchmarks"]) == {"mini", "heldout"} and "per_bucket" in after["benchmarks"]["heldout"]
    report = (run / "report" / "report.md").read_text()
    assert "mixture.png" in report and "eval.png" in report and "Not yet available" not in report


def test_the_recipe_prompt_reaches_score_build_and_eval(finished_run):
    from datasets import load_from_disk

    _, run, _, _ = finished_run
    expected = [{"role": "system", "content": TINY_PROMPT["system"]}, {"role": "user", "content": "Q: "}]
    for name in ("buckets", "heldout"):
        prompt = load_from_disk(str(run / name))[0]["prompt"]
        assert prompt[0] == expected[0] and prompt[1]["content"].startswith("Q: "), name
    for name in ("eval_before.json", "eval_after.json"):
        assert json.loads((run / name).read_text())["template"]["system"] == TINY_PROMPT["system"]
    from curriculum.scoring import read_metadata

    assert read_metadata(run / "scores.parquet")["template"] == TINY_PROMPT


def test_rerun_skips_finished_stages(finished_run):
    recipe, run, _, _ = finished_run
    before = (run / "eval_after.json").stat().st_mtime_ns
    outcomes = Pipeline(load_config(recipe)).run()
    assert {o.name: o.action for o in outcomes} == {**{s: "skipped" for s in STAGES[:-1]}, "report": "ran"}
    assert (run / "eval_after.json").stat().st_mtime_ns == before


def test_changed_settings_are_refused_until_redo_and_redo_keeps_the_base_eval(finished_run):
    recipe, run, _, _ = finished_run
    changed = load_config(recipe, ["train.max_steps=3"])
    plan = {state.name: state.status for state in Pipeline(changed).plan()}
    assert plan["data"] == plan["score"] == plan["build"] == "done" and plan["train"] == "stale"
    with pytest.raises(PipelineError, match="--redo train"):
        Pipeline(changed).run()
    base_eval = (run / "eval_before.json").stat().st_mtime_ns
    pipeline = Pipeline(changed)
    pipeline.redo("train")
    outcomes = {o.name: o.action for o in pipeline.run()}
    assert outcomes["build"] == "skipped" and outcomes["train"] == "ran"
    assert (run / "eval_before.json").stat().st_mtime_ns == base_eval  # the untrained model did not change
    assert (run / "train" / "checkpoint-3").is_dir()
    # back to the recipe as written, for the other tests
    original = Pipeline(load_config(recipe))
    original.redo("train")
    original.run()


def test_interrupted_training_is_resumed_from_its_checkpoint(finished_run):
    recipe, run, _, _ = finished_run
    (run / ".pipeline" / "train.json").unlink()  # as if killed after the last checkpoint
    pipeline = Pipeline(load_config(recipe))
    assert {s.name: s.status for s in pipeline.plan()}["train"] == "partial"
    outcomes = {o.name: o.action for o in pipeline.run(until="train")}
    assert outcomes["train"] == "resumed"
    assert {s.name: s.status for s in pipeline.plan()}["eval"] == "done"


def test_cli_prints_the_plan_and_a_summary(finished_run):
    recipe, run, _, _ = finished_run
    plan = CliRunner().invoke(cli, ["pipeline", str(recipe), "--plan"])
    assert plan.exit_code == 0, plan.output
    for stage in STAGES:
        assert stage in plan.output
    result = CliRunner().invoke(cli, ["pipeline", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "summary of tiny" in result.output and f"report: {run / 'report' / 'report.md'}" in result.output


@pytest.mark.parametrize(("recipe", "message"), [
    ({"data": {"sources": ["synthetic"]}}, "`name` is required"),
    ({"name": "x"}, "data.sources"),
    ({"name": "x", "data": {"sources": ["synthetic"]}, "trian": {}}, "unknown top-level key"),
    ({"name": "x", "data": {"sources": ["synthetic"]}, "eval": {"sample": 4}}, "unknown key(s) ['sample'] in `eval`"),
    ({"name": "x", "data": {"sources": ["synthetic"]}, "score": {"sampels": 4}}, "in `score`"),
    ({"name": "x", "data": {"sources": ["synthetic"]}, "train": {"lerning_rate": 1}}, "lerning_rate"),
])
def test_bad_recipes_are_refused_with_the_key_named(recipe, message):
    with pytest.raises(PipelineError) as error:
        config_from_dict(recipe, source="r.yaml")
    assert message in str(error.value)


def test_cli_bad_recipe_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {sources: [synthetic]}\neval: {sample: 4}\n")
    result = CliRunner().invoke(cli, ["pipeline", str(bad)])
    assert result.exit_code != 0 and "sample" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("recipe", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(recipe):
    config = load_config(recipe)
    assert config.out == Path("runs") / config.name
    assert all(b in {"aime24", "amc23", "math500", "gsm8k", "minerva", "olympiadbench"}
               for b in config.eval["benchmarks"])
    # score and train sample alike (eval too, except the R1 recipes' published evaluation protocol)
    grpo = config.train["grpo"]
    assert config.score["temperature"] == grpo["temperature"] == config.sampling["temperature"]
    assert config.score["top_p"] == grpo["top_p"] == config.sampling["top_p"]
    assert config.score["max_tokens"] == grpo["max_completion_length"] == config.sampling["max_tokens"]
    if "R1-Distill" not in config.model:
        assert all(config.eval[key] == config.sampling[key] for key in ("temperature", "top_p", "max_tokens"))
    # a recipe whose rewards check tags asks for them, and says whether the chat template opens <think>
    from curriculum.prompts import asked_tags
    from curriculum.rewards import parse_reward_spec

    options = {"cosine": {"max_len": 8}, **(config.train.get("reward_options") or {})}
    funcs, _ = parse_reward_spec(config.train.get("reward", "accuracy:1"), options=options)
    asked = asked_tags(config.template.messages("1 + 1?"))
    for func in funcs:
        assert set(getattr(func, "tags", ())) <= asked, (recipe.name, func.__name__)
        if getattr(func, "tags", ()):
            assert func.prefilled_think == ("R1-Distill" in config.model)  # R1-Distill's template opens <think>


def test_data_stage_takes_synthetic_knobs_and_per_source_limits(data_dir, tmp_path):
    import pandas as pd

    config = config_from_dict({
        "name": "data-only", "out": str(tmp_path / "run"),
        "data": {"sources": ["synthetic", "gsm8k"], "synth": {"n": 10, "seed": 1, "digits": [1], "operands": [2]},
                 "limit": {"gsm8k": 3}, "eval_sets": [], "data_dir": str(data_dir)},
    })
    Pipeline(config).run(until="data")
    problems = pd.read_parquet(tmp_path / "run" / "problems.parquet")
    assert problems["source"].value_counts().to_dict() == {"synthetic": 10, "gsm8k": 3}
    synthetic = problems[problems["source"] == "synthetic"]
    assert set(synthetic["digits"]) == {1} and set(synthetic["operands"]) == {2}
    gsm8k = pd.read_json(data_dir / "train" / "gsm8k_train.jsonl", lines=True).head(3)
    assert problems[problems["source"] == "gsm8k"]["answer"].tolist() == gsm8k["answer"].astype(str).tolist()
    with pytest.raises(PipelineError, match="unknown knob"):
        bad = config_from_dict({"name": "x", "out": str(tmp_path / "bad"),
                                "data": {"sources": ["synthetic"], "synth": {"n": 2, "colour": "red"}}})
        Pipeline(bad).run(until="data")
    with pytest.raises(PipelineError, match=r"data.synth: operations: unknown \['divide'\]"):
        bad = config_from_dict({"name": "x", "out": str(tmp_path / "bad2"),
                                "data": {"sources": ["synthetic"], "synth": {"n": 2, "operations": ["divide"]}}})
        Pipeline(bad).run(until="data")


def test_a_sampling_block_is_shared_by_score_train_and_eval(tmp_path, caplog):
    """The demo once scored at top_p 0.95 and trained at TRL's 1.0: one block now feeds all three stages."""
    from curriculum.evaluation import EvalSettings
    from curriculum.training.config import TrainSettings, load_recipe, resolve_grpo_config

    recipe = {"name": "x", "data": {"sources": ["synthetic"]}, "sampling": {"temperature": 0.9, "top_p": 0.8,
                                                                           "max_tokens": 96},
              "score": {"samples": 2}, "train": {"max_steps": 1}, "eval": {"samples": 2}}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with caplog.at_level(logging.WARNING, logger="curriculum.pipeline"):
        config = load_config(path)
    assert caplog.records == []
    sampling = score_config(config.score)[0].sampling
    grpo = resolve_grpo_config(TrainSettings.from_dict(config.train), tmp_path / "train")
    direct = resolve_grpo_config(load_recipe(path)[0], tmp_path / "direct")  # curriculum train --config x.yaml
    evaluation = EvalSettings(**{k: config.eval[k] for k in ("temperature", "top_p", "max_tokens")})
    for stage in (sampling, evaluation):
        assert (stage.temperature, stage.top_p, stage.max_tokens) == (0.9, 0.8, 96)
    for stage in (grpo, direct):
        assert (stage.temperature, stage.top_p, stage.max_completion_length) == (0.9, 0.8, 96)
    assert config.sampling == {"temperature": 0.9, "top_p": 0.8, "max_tokens": 96}


def test_without_a_block_the_stages_still_sample_alike(tmp_path):
    from curriculum.training.config import TrainSettings, resolve_grpo_config

    config = config_from_dict({"name": "x", "data": {"sources": ["synthetic"]}})
    sampling = score_config(config.score)[0].sampling
    grpo = resolve_grpo_config(TrainSettings.from_dict(config.train), tmp_path)
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == \
        (grpo.temperature, grpo.top_p, grpo.max_completion_length) == \
        (config.eval["temperature"], config.eval["top_p"], config.eval["max_tokens"])


def test_a_stage_overriding_the_shared_sampling_warns(caplog):
    recipe = {"name": "x", "data": {"sources": ["synthetic"]}, "sampling": {"temperature": 0.7, "top_p": 0.95},
              "score": {"temperature": 0.7}, "train": {"grpo": {"top_p": 1.0}}, "eval": {"temperature": 0.6}}
    with caplog.at_level(logging.WARNING, logger="curriculum.pipeline"):
        config = config_from_dict(recipe, source="r.yaml")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages  # score repeats the block's value: no warning
    assert "r.yaml: train.grpo overrides the shared sampling: top_p = 1.0 (sampling.top_p = 0.95)" in messages[0]
    assert "eval overrides the shared sampling: temperature = 0.6 (sampling.temperature = 0.7)" in messages[1]
    assert config.train["grpo"]["top_p"] == 1.0 and config.eval["temperature"] == 0.6  # the stage's value is kept
    with pytest.raises(PipelineError, match=r"unknown key\(s\) \['top_k'\] in `sampling`"):
        config_from_dict({**recipe, "sampling": {"top_k": 20}})


def test_prompt_names_a_template_and_enters_the_fingerprints():
    from curriculum.prompts import DEFAULT_TEMPLATE, THINK_ANSWER_TEMPLATE

    base = {"name": "x", "data": {"sources": ["synthetic"]}}
    plain, tagged = config_from_dict(base), config_from_dict({**base, "prompt": "think-answer"})
    assert plain.template == DEFAULT_TEMPLATE and tagged.template == THINK_ANSWER_TEMPLATE
    assert score_config(tagged.score, tagged.template)[0].template == THINK_ANSWER_TEMPLATE
    before, after = Pipeline(plain).fingerprints(), Pipeline(tagged).fingerprints()
    assert before["data"] == after["data"] and all(before[s] != after[s] for s in ("score", "build", "eval"))
    with pytest.raises(PipelineError, match="unknown prompt template 'tagged'"):
        config_from_dict({**base, "prompt": "tagged"})


@pytest.mark.parametrize(("section", "line"), [
    ("build: {strategy: kmeanz}", "build.strategy: unknown strategy 'kmeanz'; choose one of quantile, thresholds, kmeans"),
    ("score: {samples: lots}", "score.samples: expected an integer, got 'lots'"),
    ("train: {grpo: {learning_rate: lots}}", "train.grpo.learning_rate: expected float, got 'lots'"),
    ("train: {grpo: {lr_scheduler_type: cosinus}}", "train.grpo.lr_scheduler_type: 'cosinus' is not one of"),
    ("train: {schedul: linear}", "schedul"),
    ("eval: {samples: 0}", "eval.samples: must be at least 1, got 0"),
    ("eval: {benchmarks: [gsm9k]}", "eval.benchmarks: unknown benchmark 'gsm9k'"),
    ("data: {sources: [synthetic], synth: {operations: [divide]}}", "data.synth: operations: unknown ['divide']"),
    ("data: {sources: [synthetic], limit: ten}", "data.limit: expected a number of problems"),
])
def test_plan_refuses_a_bad_value_in_any_section_in_one_line(tmp_path, section, line):
    text = "name: x\ndata: {sources: [synthetic]}\n" if not section.startswith("data") else "name: x\n"
    recipe = tmp_path / "x.yaml"
    recipe.write_text(text + section + "\n")
    result = CliRunner().invoke(cli, ["pipeline", str(recipe), "--plan", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    error = [row for row in result.output.splitlines() if row.startswith("Error:")]
    assert len(error) == 1 and f"{recipe}: " in error[0] and line in error[0], result.output
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written


def test_set_overrides_are_typed_and_checked_at_load(tmp_path):
    recipe = tmp_path / "x.yaml"
    recipe.write_text("name: x\ndata: {sources: [synthetic]}\n")
    config = load_config(recipe, ["train.grpo.learning_rate=1e-5", "train.grpo.bf16=true",
                                  "train.grpo.report_to=[tensorboard]", "build.keep_frac=0.1"])
    grpo = config.settings.train.grpo
    assert grpo["learning_rate"] == 1e-5 and isinstance(grpo["learning_rate"], float)
    assert grpo["bf16"] is True and grpo["report_to"] == ["tensorboard"]
    assert config.settings.build.keep_frac == 0.1
    with pytest.raises(PipelineError, match="build.strategy"):
        load_config(recipe, ["build.strategy=kmeanz"])
