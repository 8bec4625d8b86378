"""Two processes on the CPU (gloo), launched by `accelerate launch` as a user would: every rank draws the same
chunk stream, takes its own part of each chunk, learns from every group of every rank, and a resumed run
continues the uninterrupted one. The slow test runs `curriculum train` on the real SmolLM2 the same way.

`--cpu` makes accelerate (1.15) run a single process whatever `--num_processes` says; `--multi_gpu` starts one
process per rank through torchrun, and with `use_cpu` (or ACCELERATE_USE_CPU=true) they talk over gloo. Without
either, each process would run alone into the same directory: the trainer refuses that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).with_name("distributed_train.py")
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def launch(args: list, cwd: Path, timeout: int = 900) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([*LAUNCH, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout + result.stderr


def ranks(record: Path) -> list[dict]:
    return [json.loads(Path(f"{record}.rank{rank}.json").read_text()) for rank in (0, 1)]


def test_two_processes_share_the_chunk_stream_and_resume_identically(tiny_model_dir, tmp_path):
    root = Path(__file__).resolve().parents[1]
    launch([SCRIPT, "--model", tiny_model_dir, "--out", tmp_path / "a", "--record", tmp_path / "a",
            "--max-steps", 4], cwd=root)
    first = ranks(tmp_path / "a")
    assert [r["world_size"] for r in first] == [2, 2]
    group, per_chunk = first[0]["num_generations"], first[0]["batch_size"]
    assert per_chunk == 4  # 2 processes x 4 completions per device / 2 per group: 4 problems per chunk, 4 chunks a pass

    # the same chunks, drawn in the same order, on both ranks
    assert first[0]["chunks"] == first[1]["chunks"] and len(first[0]["chunks"]) == 4
    # each rank generates for its own slice of every chunk: rank 0 the first half, rank 1 the second
    for j, chunk in enumerate(first[0]["chunks"]):
        expanded = [ident for ident in chunk for _ in range(group)]
        assert first[0]["local_batches"][j] + first[1]["local_batches"][j] == expanded
        assert first[0]["local_batches"][j] != first[1]["local_batches"][j]
    # observations are gathered: both ranks learned from every group of every rank
    assert first[0]["observations"] == first[1]["observations"] and sum(first[0]["observations"]) == 4 * per_chunk
    assert first[0]["successes"] == first[1]["successes"] and first[0]["shift"] == first[1]["shift"]

    # checkpoint-3: the sampler has drawn the pass's last chunk ahead of the step that uses it
    state = json.loads((tmp_path / "a" / "checkpoint-3" / "curriculum_state.json").read_text())
    assert (state["chunks_consumed"], state["chunks_drawn"], len(state["pass"])) == (3, 4, 4)
    launch([SCRIPT, "--model", tiny_model_dir, "--out", tmp_path / "b", "--record", tmp_path / "b",
            "--max-steps", 4, "--resume", tmp_path / "a" / "checkpoint-3"], cwd=root)
    resumed = ranks(tmp_path / "b")
    for before, after in zip(first, resumed, strict=True):
        assert after["chunks"] == before["chunks"][3:]
        assert after["local_batches"] == before["local_batches"][3:]
        assert (after["observations"], after["successes"], after["shift"]) == \
            (before["observations"], before["successes"], before["shift"])


@pytest.mark.slow
def test_curriculum_train_on_smollm2_under_accelerate_launch(smollm2_dir, tmp_path):
    from tests.test_train_cli import make_buckets

    buckets = make_buckets(tmp_path / "buckets", "smollm2-135m", n=12)
    out = tmp_path / "train"
    launch(["-m", "curriculum.cli", "train", "--buckets", buckets, "--model", smollm2_dir, "--max-steps", 2,
            "--num-generations", 2, "--set", "per_device_train_batch_size=2", "--set", "max_completion_length=16",
            "--set", "save_steps=1", "--set", "fast_generation=off", "--set", "report_to=[]", "--out", out],  # use_cpu comes from the defaults on a machine without a GPU
           cwd=Path(__file__).resolve().parents[1], timeout=1500)
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 2
    state = json.loads((out / "checkpoint-2" / "curriculum_state.json").read_text())
    # 2 ranks x 2 completions per device / 2 per group: 2 problems per chunk (one process would draw 1)
    assert state["chunk"][0] == 2 and state["chunks_consumed"] == 2
    assert sum(state["difficulty"]["observations"]) == 4
    assert (out / "config.json").is_file()  # the final model
