"""`curriculum score` and `curriculum score merge` from the command line, on the tiny offline model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.scoring import completions_path, parts_dir


def write_problems(path, count: int, prefix: str = "p") -> pd.DataFrame:
    frame = pd.DataFrame({
        "id": [f"{prefix}{i:03d}" for i in range(count)],
        "problem": [f"What is {i} + {i}?" for i in range(count)],
        "answer": [str(2 * i) for i in range(count)],
        "source": "test",
    })
    frame.to_parquet(path)
    return frame


def run(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


def one_line_error(result, pattern: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), result.output


def test_score_writes_scores_completions_and_a_summary(tmp_path, tiny_model_dir):
    problems = write_problems(tmp_path / "problems.parquet", 5)
    out = tmp_path / "scores.parquet"
    result = run(["score", "--problems", str(tmp_path / "problems.parquet"), "--model", str(tiny_model_dir),
                  "--samples", "2", "--max-tokens", "6", "--chunk-size", "2", "--keep-completions",
                  "--interval", "jeffreys", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == problems["id"].tolist()
    assert frame["n"].tolist() == [2] * 5
    assert json.loads(frame["sampling"].iloc[0])["max_tokens"] == 6
    assert len(pd.read_parquet(completions_path(out))) == 10
    assert "0 (never solved)" in result.output and "10 rollouts" in result.output
    assert f"wrote {out}" in result.output


def test_adaptive_shards_and_merge_through_the_cli(tmp_path, tiny_model_dir):
    write_problems(tmp_path / "problems.parquet", 6)
    shards = []
    for i in range(2):
        shard_out = tmp_path / f"s{i}.parquet"
        result = run(["score", "--problems", str(tmp_path / "problems.parquet"), "--model", str(tiny_model_dir),
                      "--samples", "2", "--adaptive", "--max-samples", "4", "--max-tokens", "4",
                      "--shard", f"{i}/2", "--out", str(shard_out)])
        assert result.exit_code == 0, result.output
        assert "budget" in result.output
        shards.append(str(shard_out))
    merged = tmp_path / "all.parquet"
    result = run(["score", "merge", *shards, "--out", str(merged), "--problems", str(tmp_path / "problems.parquet")])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(merged)["id"].tolist() == [f"p{i:03d}" for i in range(6)]
    one_line_error(run(["score", "merge", shards[0], "--out", str(tmp_path / "x.parquet")]), r"missing shard")
    one_line_error(run(["score", "merge", shards[0], shards[0], shards[1], "--out", str(tmp_path / "x.parquet")]),
                   r"both shard 0/2 \(overlap\)")


def test_bad_inputs_are_one_clear_line(tmp_path, tiny_model_dir):
    write_problems(tmp_path / "ok.parquet", 2)
    out = str(tmp_path / "s.parquet")
    base = ["score", "--samples", "1", "--max-tokens", "2", "--out", out]

    one_line_error(run(["score", "--samples", "2"]), "--problems and --out are required")
    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", "no-such-model"]),
                   "unknown model 'no-such-model'")
    pd.DataFrame({"id": pd.Series([], dtype=str), "problem": pd.Series([], dtype=str),
                  "answer": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty.parquet")
    one_line_error(run([*base, "--problems", str(tmp_path / "empty.parquet")]), "no problems")
    (tmp_path / "bad.parquet").write_text("id,problem\n1,2\n")
    one_line_error(run([*base, "--problems", str(tmp_path / "bad.parquet")]), "cannot read problems file")
    one_line_error(run([*base, "--problems", str(tmp_path / "nope.parquet")]), "does not exist")
    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", str(tiny_model_dir),
                        "--shard", "2/2"]), "shard must be i/N")
    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", str(tiny_model_dir),
                        "--adaptive", "--samples", "8", "--max-samples", "4"]), "max_samples")

    plain = tmp_path / "plain"
    plain.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.name != "chat_template.jinja":
            (plain / item.name).write_bytes(item.read_bytes())
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", str(plain)]),
                   "no chat template")

    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--engine", "openai",
                        "--base-url", "http://127.0.0.1:9", "--engine-option", "max_retries=0"]),
                   "cannot reach an OpenAI-compatible server at http://127.0.0.1:9/v1")
    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", str(tiny_model_dir),
                        "--engine-option", "batchsize=2"]), "unknown option")

    assert run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", str(tiny_model_dir)]).exit_code == 0
    one_line_error(run([*base, "--problems", str(tmp_path / "ok.parquet"), "--model", str(tiny_model_dir)]),
                   "already exists")


def test_kill_9_midway_then_resume_loses_nothing_and_duplicates_nothing(tmp_path, tiny_model_dir):
    total = 16
    problems = write_problems(tmp_path / "problems.parquet", total)
    (tmp_path / "prompt.yaml").write_text("system: null\ninstruction: '{problem}'\n")  # short prompts, fast chunks
    out = tmp_path / "scores.parquet"
    command = [sys.executable, "-m", "curriculum.cli", "score", "--problems", str(tmp_path / "problems.parquet"),
               "--model", str(tiny_model_dir), "--samples", "2", "--max-tokens", "8", "--chunk-size", "2",
               "--prompt-config", str(tmp_path / "prompt.yaml"), "--keep-completions", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TQDM_DISABLE": "1"})
    parts = parts_dir(out)
    deadline = time.monotonic() + 300
    try:
        while len(list(parts.glob("part-*[0-9].parquet"))) < 3:
            assert process.poll() is None, "scoring finished before it could be killed; make the run longer"
            assert time.monotonic() < deadline, "no chunk was written in time"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not out.exists()
    finished = pd.concat([pd.read_parquet(p) for p in sorted(parts.glob("part-*[0-9].parquet"))], ignore_index=True)
    assert 6 <= len(finished) < total

    result = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == problems["id"].tolist()  # every problem, once, in order
    kept = frame.set_index("id").loc[finished["id"]].reset_index()
    pd.testing.assert_frame_equal(kept[finished.columns], finished)  # finished work was kept, not redone
    assert f"this session: {total - len(finished)} problems" in result.stdout
    completions = pd.read_parquet(completions_path(out))
    assert len(completions) == 2 * total and not completions.duplicated(["id", "sample"]).any()
    assert not parts.exists()
