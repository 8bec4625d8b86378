"""`curriculum data prepare`: validation with row-numbered rejects, dedup, decontamination, summary counts."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.data import normalize_text, prepare, problem_id, resolve_source
from curriculum.data.decontaminate import ContaminationIndex


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def messy_jsonl(tmp_path):
    """Good rows mixed with every kind of bad row the issue names, one per line."""
    path = tmp_path / "mine.jsonl"
    lines = [
        json.dumps({"problem": "What is 2 + 2?", "answer": "4"}),                  # 1 good
        '{"problem": "broken", "answer": ',                                       # 2 malformed JSON
        json.dumps({"problem": "", "answer": "3"}),                               # 3 empty problem
        json.dumps({"problem": "What is 5 - 1?"}),                                # 4 missing answer
        json.dumps(["not", "an", "object"]),                                      # 5 non-object row
        json.dumps({"problem": "x" * 200_000, "answer": "1"}),                    # 6 200 KB problem
        json.dumps({"problem": "What is  2 +  2?", "answer": "4"}),               # 7 near duplicate of 1
        json.dumps({"problem": "What is 3 * 3?", "answer": 9}),                   # 8 good (numeric answer)
    ]
    data = "\n".join(lines).encode() + b"\n\xff\xfe\x00garbage\x81\n"            # 9 binary garbage
    data += json.dumps({"problem": "Tell me 1 + 6.", "answer": "7"}).encode() + b"\n"  # 10 good
    path.write_bytes(data)
    return path


def test_messy_file_keeps_good_rows_and_reports_each_bad_one(tmp_path, messy_jsonl):
    out = tmp_path / "run" / "problems.parquet"
    result = _run("data", "prepare", "--source", str(messy_jsonl), "--out", str(out), "--decontaminate", "none")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert sorted(frame["answer"]) == ["4", "7", "9"]
    rejects = [json.loads(line) for line in (out.parent / "problems.rejects.jsonl").open()]
    by_line = {r["line"]: r for r in rejects}
    assert set(by_line) == {2, 3, 4, 5, 6, 7, 9}
    assert all(r["file"] == str(messy_jsonl) for r in rejects)
    assert "malformed JSON" in by_line[2]["reason"]
    assert by_line[3]["reason"] == "empty problem" and by_line[3]["field"] == "problem"
    assert by_line[4]["reason"] == "missing answer" and by_line[4]["field"] == "answer"
    assert "not an object" in by_line[5]["reason"]
    assert "too long" in by_line[6]["reason"]
    assert by_line[7]["reason"] == f"duplicate of {messy_jsonl}:1"
    assert "binary" in by_line[9]["reason"]
    assert "7 rows rejected" in result.output


def test_strict_fails_on_invalid_rows_and_empty_result_fails(tmp_path, messy_jsonl):
    strict = _run("data", "prepare", "--source", str(messy_jsonl), "--out", str(tmp_path / "a.parquet"),
                  "--decontaminate", "none", "--strict")
    assert strict.exit_code != 0 and "--strict" in strict.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"problem": ""}\n')
    nothing = _run("data", "prepare", "--source", str(empty), "--out", str(tmp_path / "b.parquet"),
                   "--decontaminate", "none")
    assert nothing.exit_code != 0 and "no valid problems" in nothing.output


def test_unknown_source_is_one_clear_line(tmp_path):
    result = _run("data", "prepare", "--source", "no-such-source", "--out", str(tmp_path / "x.parquet"))
    assert result.exit_code != 0
    assert "unknown source 'no-such-source'" in result.output
    assert "Traceback" not in result.output


def test_ids_are_stable_and_ignore_spacing_case_and_latex_spacing():
    assert problem_id("What is $\\frac{1}{2}$ of 4?", "s") == problem_id("what is $\\dfrac{1}{2}$  of 4?", "s")
    assert problem_id("What is 1?", "a") != problem_id("What is 1?", "b")
    assert normalize_text("A\\,B \\quad C") == "a b c"


def test_hub_ids_and_names_resolve_to_the_same_config():
    assert resolve_source("openai/gsm8k").name == "gsm8k"
    assert resolve_source("gsm8k_test").hub_split == "test"
    assert resolve_source("datasets_cfg/math.yaml").local_fields.answer_rule == "boxed"


def test_contamination_index_flags_copies_not_boilerplate():
    index = ContaminationIndex(n=8, threshold=0.8).add(
        ["What is the remainder when $1 + 2 + 3 + 4 + \\dots + 9 + 10$ is divided by 9?"], "math500")
    assert index.match("What is the remainder when $1+2+3+4+\\dots+9+10$ is  divided by 8?") == "math500"
    assert index.match("What is the remainder when 7 is divided by 3? Enter your answer as an integer.") is None


def test_gsm8k_and_math_train_from_local_dir(data_dir, tmp_path):
    out = tmp_path / "problems.parquet"
    result = _run("data", "prepare", "--source", "datasets_cfg/gsm8k.yaml", "--source", "datasets_cfg/math.yaml",
                  "--data-dir", str(data_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    total_line = next(line for line in result.output.splitlines() if line.startswith("total"))
    assert int(total_line.split()[-1]) == len(frame)
    assert frame["id"].is_unique
    assert set(frame["source"]) == {"gsm8k", "math"}
    rejects = [json.loads(line) for line in (tmp_path / "problems.rejects.jsonl").open()]
    contaminated = {r["excerpt"][:60] for r in rejects if r["reason"] == "contaminated: overlaps math500"}
    assert any("roots of $z^4 - z^2 + 1 = 0$" in text for text in
               [r["excerpt"] for r in rejects]), "the z^4 - z^2 + 1 MATH-500 near copy must be caught"
    assert any("divided by 8" in r["excerpt"] for r in rejects)
    assert len(contaminated) >= 2
    assert not frame["problem"].str.contains("all the roots of \\$z\\^4 - z\\^2 \\+ 1", regex=True).any()


def test_library_prepare_counts_add_up(tmp_path):
    result = prepare(["datasets_cfg/synthetic.yaml"], tmp_path / "p.parquet", options=None)
    summary = result.summaries[0]
    assert summary.read == summary.kept + summary.invalid + summary.duplicate + summary.contaminated
    assert summary.kept == 500


def test_repaired_rows_are_deduplicated_on_their_repaired_text(tmp_path):
    """A copy whose `\\frac` was damaged to form feed + "rac" is the same problem once repaired: a duplicate."""
    path = tmp_path / "copies.jsonl"
    path.write_text('{"problem": "What is $\\\\frac{1}{2}$ of 8?", "answer": "4"}\n'
                    '{"problem": "What is $\\frac{1}{2}$ of 8?", "answer": "4"}\n')
    out = tmp_path / "problems.parquet"
    result = _run("data", "prepare", "--source", str(path), "--out", str(out), "--decontaminate", "none")
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["problem"].tolist() == ["What is $\\frac{1}{2}$ of 8?"]
    rejects = [json.loads(line) for line in (tmp_path / "problems.rejects.jsonl").open()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, f"duplicate of {path}:1")]
    notes = [json.loads(line) for line in (tmp_path / "problems.repairs.jsonl").open()]
    assert [(n["kind"], n["line"], n["field"], n["commands"]) for n in notes] == [("repaired", 2, "problem", ["frac"])]
