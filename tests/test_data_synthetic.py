"""Synthetic problems: deterministic by seed, knobs kept as columns, answers correct."""

import pandas as pd
import pytest
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.data import generate_synthetic


def test_same_seed_same_problems_other_seed_other_problems():
    first = [p.to_row() for p in generate_synthetic(200, seed=3)]
    assert first == [p.to_row() for p in generate_synthetic(200, seed=3)]
    assert first != [p.to_row() for p in generate_synthetic(200, seed=4)]


def test_answers_are_right_and_knobs_are_columns():
    problems = generate_synthetic(300, seed=0)
    assert len({p.problem for p in problems}) == 300
    for problem in problems:
        row = problem.to_row()
        assert {"digits", "operands", "operation_set", "style", "difficulty"} <= set(row)
        if row["style"] == "arithmetic":
            expression = row["problem"].removeprefix("What is ").removesuffix("?")
            assert str(eval(expression)) == row["answer"]
    assert {p.extra["style"] for p in problems} == {"arithmetic", "word"}
    assert len({p.extra["difficulty"] for p in problems}) >= 5


def test_synth_command_writes_parquet(tmp_path):
    out = tmp_path / "synth.parquet"
    result = CliRunner().invoke(cli, ["data", "synth", "--n", "50", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 50 and frame["id"].is_unique
    assert set(frame.columns) >= {"id", "problem", "answer", "source", "digits", "difficulty"}


def test_synth_command_knobs_and_exclusion_make_a_disjoint_heldout_set(tmp_path):
    train, heldout = tmp_path / "train.parquet", tmp_path / "heldout.jsonl"
    knobs = ["--digits", "1", "--operands", "2", "--operations", "add", "--word-fraction", "0"]
    runner = CliRunner()
    assert runner.invoke(cli, ["data", "synth", "--n", "30", "--seed", "0", *knobs, "--out", str(train)]).exit_code == 0
    result = runner.invoke(cli, ["data", "synth", "--n", "20", "--seed", "0", *knobs, "--exclude", str(train),
                                 "--out", str(heldout)])
    assert result.exit_code == 0, result.output
    first, second = pd.read_parquet(train), pd.read_json(heldout, lines=True, dtype=False)
    assert len(second) == 20 and not set(first["problem"]) & set(second["problem"])
    assert set(second["digits"]) == {1} and set(second["operands"]) == {2} and set(second["operation_set"]) == {"add"}
    # one-digit sums of two operands: 81 distinct problems; asking for more says so instead of looping forever
    result = runner.invoke(cli, ["data", "synth", "--n", "100", *knobs, "--out", str(tmp_path / "all.parquet")])
    assert result.exit_code == 0 and "only 81 distinct problems" in result.output


def test_synth_command_rejects_unknown_operation(tmp_path):
    result = CliRunner().invoke(cli, ["data", "synth", "--operations", "add,divide", "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "unknown ['divide']" in result.output


@pytest.mark.parametrize("knobs, message", [
    ({"operations": ("add", "divide")}, r"unknown \['divide'\]"),
    ({"digits": (0, 1)}, "digits must be >= 1"),
    ({"operands": (1,)}, "operands >= 2"),
    ({"operands": ()}, "at least one value"),
    ({"word_fraction": 1.5}, "word_fraction"),
])
def test_knobs_reject_values_the_generator_cannot_use(knobs, message):
    from curriculum.data.synthetic import Knobs

    with pytest.raises(ValueError, match=message):
        Knobs(**knobs)


def test_synth_command_exclude_file_without_problems_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    result = CliRunner().invoke(cli, ["data", "synth", "--exclude", str(bad), "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "no rows with a `problem` field" in result.output
