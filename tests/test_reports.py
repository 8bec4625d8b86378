"""The run report: every section from a complete run directory, and a sensible report from partial ones."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.reports import FIGURES, read_metrics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_scores(run, n=120, samples=4, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    passes = rng.binomial(samples, rng.beta(0.6, 1.2, size=n))
    pd.DataFrame({
        "id": [f"p{i}" for i in range(n)], "n": samples, "k": passes, "pass_rate": passes / samples,
        "ci_low": 0.0, "ci_high": 1.0, "mean_tokens": 80.0, "truncated_frac": 0.1, "model": "tiny",
        "engine": "hf", "sampling": json.dumps({"temperature": 0.7, "max_tokens": 96}),
    }).to_parquet(run / "scores.parquet")


def _write_manifest(run):
    (run / "buckets").mkdir(parents=True, exist_ok=True)
    manifest = {"strategy": "quantile", "edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [30, 25, 20, 15],
                "dropped": {"pass_rate_1": 10}}
    (run / "buckets" / "manifest.json").write_text(json.dumps(manifest))


def _write_metrics(run, steps=30, torn=False):
    (run / "train").mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        progress = step / steps
        weights = np.array([max(0.0, 1 - abs(progress * 3 - b)) + 0.05 for b in range(4)])
        weights /= weights.sum()
        row = {"step": step, "loss": 0.01, "reward": 0.2 + 0.3 * progress, "rewards/accuracy/mean": 0.2 + 0.3 * progress,
               "completions/mean_length": 90 - 20 * progress, "completions/clipped_ratio": 0.4 - 0.3 * progress,
               "curriculum/progress": progress, "curriculum/zero_adv_share": 0.6 - 0.2 * progress}
        row |= {f"curriculum/bucket_{b}_weight": float(w) for b, w in enumerate(weights)}
        row |= {f"curriculum/bucket_{b}_reward": 0.8 - 0.2 * b + 0.1 * progress for b in range(4)}
        lines.append(json.dumps(row))
    lines.append(json.dumps({"train_runtime": 12.0}))  # a summary line without a step is not a curve point
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"step": 31, "rew'
    (run / "train" / "metrics.jsonl").write_text(text)


def _eval_json(mean, problems=20, k=4, seed=0):
    correct = [k if i < round(mean * problems) else 0 for i in range(problems)]
    metric = {"mean": mean, "ci_low": max(0, mean - 0.1), "ci_high": min(1, mean + 0.1)}
    bench = {"n_problems": problems, "k": k, "n_samples": problems * k, "avg_at_k": metric,
             "pass_at_k": {"1": metric, str(k): metric}, "maj_at_k": metric, "mean_tokens": 120.0,
             "truncated_frac": 0.2, "problems": {"id": [f"q{i}" for i in range(problems)], "correct": correct}}
    return {"model": "tiny", "engine": "hf", "k": k, "limit": problems, "seed": seed,
            "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 128, "seed": seed},
            "benchmarks": {"gsm8k": bench}}


@pytest.fixture()
def full_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: unit\nmodel: tiny\ntrain: {schedule: linear, max_steps: 30}\n")
    _write_scores(run)
    _write_manifest(run)
    _write_metrics(run, torn=True)
    (run / "eval_before.json").write_text(json.dumps(_eval_json(0.2)))
    (run / "eval_after.json").write_text(json.dumps(_eval_json(0.45)))
    return run


def test_full_run_report_has_every_figure_and_an_html_with_them_embedded(full_run):
    report = write_report(full_run)
    names = {path.name for path in report.figures}
    assert names == set(FIGURES)
    markdown = report.markdown.read_text()
    for path in report.figures:
        assert path.read_bytes().startswith(PNG_MAGIC)
        assert f"]({path.name})" in markdown  # relative links: the report folder can be moved as a whole
    page = report.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(FIGURES)
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for data in embedded)
    assert "<img" in page and 'src="http' not in page and ".png\"" not in page
    assert "after minus before" in markdown.lower() and "significant" in markdown
    assert report.missing == ["problems.parquet"]


def test_eval_table_shows_intervals_and_paired_difference(full_run):
    markdown = write_report(full_run).markdown.read_text()
    assert "20.0 [10.0, 30.0]" in markdown and "45.0 [35.0, 55.0]" in markdown
    assert "+25.0 pts" in markdown


def test_partial_run_reports_what_exists_and_lists_what_is_missing(tmp_path):
    run = tmp_path / "partial"
    run.mkdir()
    _write_scores(run)
    report = write_report(run, tmp_path / "out")
    assert [path.name for path in report.figures] == ["pass_rates.png"]
    assert "train/metrics.jsonl" in report.missing and "buckets/manifest.json" in report.missing
    assert "No training metrics yet" in report.markdown.read_text()


def test_empty_run_dir_still_gives_a_report(tmp_path):
    report = write_report(tmp_path)
    assert report.figures == [] and report.markdown.exists() and report.html.exists()


def test_stale_figure_is_removed_when_its_data_goes(full_run):
    write_report(full_run)
    (full_run / "train" / "metrics.jsonl").unlink()
    report = write_report(full_run)
    assert not (full_run / "report" / "mixture.png").exists()
    assert "mixture.png" not in {p.name for p in report.figures}


def test_metrics_reader_skips_torn_lines_and_summaries(full_run):
    rows = read_metrics(full_run / "train" / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(1, 31))


def test_report_cli(full_run):
    result = CliRunner().invoke(cli, ["report", str(full_run)])
    assert result.exit_code == 0, result.output
    assert "7 figures" in result.output
    missing = CliRunner().invoke(cli, ["report", str(full_run / "nope")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


@pytest.mark.parametrize("kind", ["rating", "pass_rate"])
def test_buckets_from_a_difficulty_column_report_unknown_n_k_and_intervals(tmp_path, kind):
    import pandas as pd

    from curriculum.buckets import BuildConfig, DifficultyColumn, build_from_column, save
    from curriculum.reports import bucket_edges

    run = tmp_path / "run"
    values = [1 + i % 5 for i in range(30)] if kind == "rating" else [5 + (i * 7) % 90 for i in range(30)]
    problems = pd.DataFrame({"id": [f"q{i}" for i in range(30)], "problem": [f"{i} + 1?" for i in range(30)],
                             "answer": [str(i + 1) for i in range(30)], "source": "pool", "difficulty": values})
    spec = DifficultyColumn("difficulty", kind=kind, scale=1 if kind == "rating" else 100)
    result = build_from_column(problems, spec, BuildConfig(num_buckets=3), problems_path="pool.parquet")
    save(result, run / "buckets")
    report = write_report(run)
    markdown = report.markdown.read_text()
    assert "Difficulty: column `difficulty` of `pool.parquet`" in markdown
    assert "n, k and pass-rate intervals are unknown for these buckets" in markdown
    assert "scores.parquet" not in report.missing  # no scores is not a missing stage here
    if kind == "rating":
        assert "the pass rate is unknown too, and no zero-signal filter was applied" in markdown
        assert "rating range" in markdown and "| 1 | 6 | 3 – 3 (mean 3) |" in markdown
        assert "rating edges [2.5, 3.5]" in markdown
        assert bucket_edges(result.manifest) == []  # rating edges are not pass rates: never drawn as such
    else:
        assert "pass rate range" in markdown and "percent" in markdown
        assert bucket_edges(result.manifest) == result.manifest["edges"] != []


def test_scored_buckets_report_their_source_and_ranges(full_run):
    manifest = json.loads((full_run / "buckets" / "manifest.json").read_text())
    manifest["buckets"] = [{"bucket": 0, "count": 30, "pass_rate_min": 0.75, "pass_rate_max": 0.75,
                            "pass_rate_mean": 0.75}]
    manifest["ties"] = {"note": "asked for 4 buckets; pass rates have 3 distinct values in the kept range; made 3 buckets"}
    (full_run / "buckets" / "manifest.json").write_text(json.dumps(manifest))
    markdown = write_report(full_run).markdown.read_text()
    assert "Difficulty: pass rates measured by `curriculum score`" in markdown
    assert "0.75 – 0.75 (mean 0.75)" in markdown and "Ties: asked for 4 buckets" in markdown
