"""Plots and the markdown / single-file HTML report of a run directory.

Three files, one concept each:

    document.py     the Document (heading, text, table, figure, code blocks) and its markdown/HTML rendering
    plots.py        every figure, and the house style (pyplot, save_figure, smooth) other reports share
    run_report.py   reading a run directory (read_run, read_metrics) and assembling its report (write_report)

Every public name is importable from here (`from curriculum import reports; reports.write_report(...)`).
"""

from __future__ import annotations

from curriculum.layout import METRICS, REPORT_DIR
from curriculum.reports.document import Block, Document, Report, fmt_difference, write_document
from curriculum.reports.plots import (
    bucket_counts,
    bucket_edges,
    bucket_keys,
    plot_bucket_sizes,
    plot_completions,
    plot_eval,
    plot_mixture,
    plot_pass_rates,
    plot_rewards,
    plot_zero_advantage,
    pyplot,
    reward_keys,
    save_figure,
    series,
    smooth,
    zero_advantage_key,
)
from curriculum.reports.run_report import (
    FIGURES,
    ReportError,
    RunFiles,
    bucket_assignment,
    bucket_rows,
    build_document,
    difference_rows,
    difficulty_source,
    difficulty_text,
    eval_table,
    read_metrics,
    read_run,
    write_report,
)
from curriculum.stats import fmt_interval

__all__ = [
    "FIGURES", "METRICS", "REPORT_DIR", "Block", "Document", "Report", "ReportError", "RunFiles",
    "bucket_assignment", "bucket_counts", "bucket_edges", "bucket_keys", "bucket_rows", "build_document",
    "difference_rows", "difficulty_source", "difficulty_text", "eval_table", "fmt_difference", "fmt_interval",
    "plot_bucket_sizes", "plot_completions", "plot_eval", "plot_mixture", "plot_pass_rates", "plot_rewards",
    "plot_zero_advantage", "pyplot", "read_metrics", "read_run", "reward_keys", "save_figure", "series", "smooth",
    "write_document", "write_report", "zero_advantage_key",
]
