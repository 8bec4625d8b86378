"""A killed evaluation resumes from its journal of finished chunks, with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import shutil

import pytest

from curriculum.evaluation import EvalSettings, evaluate, journal_path_for, samples_path_for, write_eval

SETTINGS = EvalSettings(samples=2, max_tokens=6, chunk_size=2)
BENCHMARKS = ["gsm8k:6"]  # three chunks of two problems
MARKER = "journaled completion, not drawn again"


class Interrupted(Exception):
    """Stands in for the kill: raised once `after` problems are done."""


def _run(model, data_dir, out, *, settings=SETTINGS, stop_after: int | None = None) -> dict:
    def progress(done: int) -> None:
        if stop_after is not None and done >= stop_after:
            raise Interrupted

    return evaluate(str(model), BENCHMARKS, settings=settings, data_dir=data_dir, samples_path=samples_path_for(out),
                    journal_path=journal_path_for(out), on_progress=progress)


def _numbers(result: dict) -> str:
    return json.dumps({key: value for key, value in result.items() if key != "timing"}, sort_keys=True)


def _interrupt(model, data_dir, out, stop_after: int, settings=SETTINGS) -> list[dict]:
    with pytest.raises(Interrupted):
        _run(model, data_dir, out, settings=settings, stop_after=stop_after)
    return [json.loads(line) for line in journal_path_for(out).read_text().splitlines()]


def _mark_first_completion(out) -> None:
    """Rewrite the first journaled completion, so a resumed run shows whether it reused or redrew it."""
    journal = journal_path_for(out)
    header, first, *rest = journal.read_text().splitlines()
    entry = json.loads(first)
    entry["groups"][0][0][0] = MARKER
    journal.write_text("\n".join([header, json.dumps(entry), *rest]) + "\n")


def _texts(out) -> list[str]:
    return [json.loads(line)["text"] for line in samples_path_for(out).read_text().splitlines()]


def test_an_interrupted_evaluation_resumes_with_the_numbers_of_an_uninterrupted_one(tiny_model_dir, data_dir,
                                                                                     tmp_path):
    whole = _run(tiny_model_dir, data_dir, tmp_path / "whole.json")
    out = tmp_path / "resumed.json"
    lines = _interrupt(tiny_model_dir, data_dir, out, stop_after=4)
    assert [(line["benchmark"], line["chunk"]) for line in lines[1:]] == [("gsm8k", 0), ("gsm8k", 1)]

    resumed = _run(tiny_model_dir, data_dir, out)
    assert _numbers(resumed) == _numbers(whole)
    assert _texts(out) == _texts(tmp_path / "whole.json")
    write_eval(resumed, out)
    assert out.exists() and not journal_path_for(out).exists()  # the finished file replaces the journal


def test_finished_chunks_are_reused_not_drawn_again(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "eval.json"
    _interrupt(tiny_model_dir, data_dir, out, stop_after=2)
    _mark_first_completion(out)
    _run(tiny_model_dir, data_dir, out)
    assert _texts(out)[0] == MARKER


def test_a_torn_last_line_is_dropped_and_its_chunk_drawn_again(tiny_model_dir, data_dir, tmp_path):
    whole = _run(tiny_model_dir, data_dir, tmp_path / "whole.json")
    out = tmp_path / "eval.json"
    _interrupt(tiny_model_dir, data_dir, out, stop_after=4)
    journal = journal_path_for(out)
    header, first, second = journal.read_text().splitlines()
    journal.write_text("\n".join([header, first, second[: len(second) // 2]]))  # killed while writing chunk 1

    resumed = _run(tiny_model_dir, data_dir, out)
    assert _numbers(resumed) == _numbers(whole)
    chunks = [json.loads(line)["chunk"] for line in journal.read_text().splitlines()[1:]]
    assert chunks == [0, 1, 2]  # the torn line is gone, chunk 1 was drawn again and appended whole


@pytest.mark.parametrize("change", ["seed", "weights"])
def test_a_journal_of_another_evaluation_is_not_reused(tiny_model_dir, data_dir, tmp_path, change):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "eval.json"
    _interrupt(model, data_dir, out, stop_after=2)
    _mark_first_completion(out)
    settings = SETTINGS
    if change == "seed":
        settings = EvalSettings(samples=2, max_tokens=6, chunk_size=2, seed=1)
    else:  # retrained into the same folder: same path, new weights
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes())
    _run(model, data_dir, out, settings=settings)
    assert MARKER not in _texts(out)
