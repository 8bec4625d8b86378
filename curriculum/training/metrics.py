"""Every training log as one JSON line in `<out>/metrics.jsonl`, with the cost of the run beside it.

TRL already logs rewards, per-reward means, completion length, truncation (`completions/clipped_ratio`),
the share of groups with zero reward spread and the KL; the curriculum trainer adds `curriculum/*`. This
callback adds what parameter-efficient training is judged by: trainable parameters, optimizer-state bytes,
peak memory (process RSS on CPU, `torch.cuda.max_memory_allocated` on GPU) and seconds per optimizer step.
It runs before the report_to loggers, so TensorBoard receives the same numbers.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

MIB = 1024 * 1024


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes held by the optimizer's per-parameter state (Adam's two moments and step counters)."""
    import torch

    if optimizer is None:
        return 0
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total


def optimizer_parameters(optimizer) -> list:
    """The parameters an optimizer was handed, over all its groups."""
    return [p for group in optimizer.param_groups for p in group["params"]] if optimizer is not None else []


def peak_memory_bytes() -> tuple[int, str]:
    """(peak bytes, where): CUDA peak allocation on a GPU, otherwise this process's peak resident set."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated()), "cuda"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024), "rss"


class MetricsCallback(TrainerCallback):
    """Append each `on_log` record (plus cost numbers) to a JSONL file; add the numbers to the logs.

    `probes` are callables returning extra fields for the JSON line only (they may be lists, such as the
    active layers of a layer schedule). On resume, lines after the checkpoint's step are dropped first, so
    the file reads as one uninterrupted run.
    """

    def __init__(self, path: str | Path, probes: list[Callable[[], dict]] | None = None):
        self.path = Path(path)
        self.probes = list(probes or [])
        self._step_started: float | None = None
        self._step_times: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state.global_step > 0 and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= state.global_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self._step_times.append(time.perf_counter() - self._step_started)
            self._step_started = None

    def on_log(self, args, state, control, logs=None, model=None, optimizer=None, **kwargs):
        if logs is None:
            return
        peak, where = peak_memory_bytes()
        extra = {
            "perf/trainable_params": trainable_parameters(model) if model is not None else None,
            "perf/optimizer_state_mib": optimizer_state_bytes(optimizer) / MIB,
            "perf/peak_memory_mib": peak / MIB,
        }
        if self._step_times:
            extra["perf/step_time_s"] = sum(self._step_times) / len(self._step_times)
            self._step_times.clear()
        logs.update({key: value for key, value in extra.items() if value is not None})
        if not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "time": time.time(), "memory_kind": where}
        record.update({key: _jsonable(value) for key, value in logs.items()})
        for probe in self.probes:
            record.update(probe())
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
