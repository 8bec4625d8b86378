"""Difficulty as a pass rate under base-model rollouts: fixed-n or adaptive, resumable, sharded.

A problem's difficulty is the share of the base model's sampled completions that `curriculum.verify`
accepts, with a binomial interval (Wilson or Jeffreys, `curriculum.stats`) that says how sure we are.

Adaptive mode samples in rounds of `samples` and stops a problem as soon as its interval (at the lower
`stop_confidence`) lies inside one band of `edges` (default 0.8, 0.5, 0.2: bands [0, .2], [.2, .5],
[.5, .8], [.8, 1]), because all the build stage will ever ask of the score is which band it falls in:
problems solved always or never settle in an extreme band after one round, problems near an edge use the
full `max_samples`.

Scoring is most of the compute before training, so finished work is never lost: problems are scored in
chunks, and each finished chunk is written as its own parquet part (temporary file, fsync, atomic rename)
under `<out>.parts/`. A kill -9 loses at most the chunk in flight; `resume=True` skips every problem that
has a part and the last step consolidates the parts into `<out>` (again atomically) and removes them.
`shard=Shard(i, N)` keeps the problems whose id hashes to i mod N, and `merge_shards` joins the N outputs,
refusing overlaps and gaps.
"""

from curriculum.scoring.config import (
    COMPLETION_COLUMNS,
    DEFAULT_EDGES,
    SCORE_COLUMNS,
    ScoreConfig,
    ScoringError,
    Shard,
    load_problems,
    parse_edges,
    problems_fingerprint,
    validate_problems,
)
from curriculum.scoring.estimation import Progress, adaptive_sample_sizes, band_index, score_chunk, settled
from curriculum.scoring.run import ScoreSummary, pass_rate_histogram, score
from curriculum.scoring.store import (
    PartStore,
    check_output,
    completions_path,
    merge_shards,
    parts_dir,
    read_metadata,
    read_scores,
)

__all__ = [
    "COMPLETION_COLUMNS", "DEFAULT_EDGES", "SCORE_COLUMNS", "PartStore", "Progress", "ScoreConfig", "ScoreSummary",
    "ScoringError", "Shard", "parse_edges", "parts_dir", "adaptive_sample_sizes", "band_index", "check_output", "completions_path", "load_problems",
    "merge_shards", "pass_rate_histogram", "problems_fingerprint", "read_metadata", "read_scores", "score",
    "score_chunk", "settled", "validate_problems",
]

