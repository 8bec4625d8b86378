"""Several runs of a study at once, each in its own process on its own cores (`compare --workers N`).

Why: a study is many independent runs, and one run does not always use every core well. On the 2-core test
machine (reports/bench_workers.md), two one-core evaluations of SmolLM2-135M finish 1.30x as many
completions per second as one two-core evaluation, while training scales to both cores (two one-core runs
reach only 0.88x the steps per second): about 1.1x for a study's mix. More cores per machine, or models
small enough that a run cannot use them, make the case stronger. Each unit of the study (the untrained
model's evaluation, or one arm and seed: training, then its learning curve) runs in a fresh interpreter, so
no memory or inference engine is carried from one run to the next, and it does exactly what the serial path
does (`compare.run_unit`): the same files, fingerprints and resume.

A child writes its narration and progress bars to `<unit>/worker.log`; the parent prints one line when a
unit starts and ends, with the study's progress and an ETA. A failed unit does not stop the others; the
parent reports it after they finish, and a rerun continues where everything stopped. Stopping the parent
stops its workers: on SIGTERM or SIGHUP it terminates them, and a worker whose parent is gone (even killed
with SIGKILL) exits by itself, so a rerun never finds an old worker still writing the same unit's files.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from curriculum.compare import BASE, CompareError, CompareSettings, Event, Unit, arm_dir
from curriculum.lifetime import exit_when_parent_changes

SETTINGS_FILE = ".workers-settings.pkl"
LOG = "worker.log"
POLL_S = 2.0
PARENT_PID = "CURRICULUM_STUDY_PID"  # set in a worker's environment: the study process it belongs to


def core_slots(workers: int, cores: list[int] | None = None) -> list[list[int]]:
    """The usable cores split into `workers` contiguous slices, as even as possible (at least one each)."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    if workers > len(cores):
        raise CompareError(f"workers: {workers} runs at once need at least {workers} cores; this process may use "
                           f"{len(cores)} ({', '.join(map(str, cores))})")
    size, extra = divmod(len(cores), workers)
    slots, start = [], 0
    for index in range(workers):
        end = start + size + (index < extra)
        slots.append(cores[start:end])
        start = end
    return slots


def worker_environment(cores: list[int], base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child pinned to `cores`: every thread pool sized to them, vLLM's CPU engine bound
    to them (its default would bind every child to the same cores)."""
    env = dict(os.environ if base is None else base)
    threads = str(len(cores))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false",
               VLLM_CPU_OMP_THREADS_BIND=",".join(map(str, cores)), CURRICULUM_WORKER_CORES=",".join(map(str, cores)))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)  # a child is one training process, whatever launched the parent
    # Its own rendezvous port: TRL's colocate engine opens a process group on MASTER_PORT, and when unset it
    # picks the first free port of a fixed list, so two children starting together both took 29500.
    env.update(MASTER_ADDR="localhost", MASTER_PORT=str(free_port()))
    env[PARENT_PID] = str(os.getpid())
    return env


def free_port() -> int:
    """A TCP port free now (the OS's choice), for one child's process group."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def unit_directory(settings: CompareSettings, unit: Unit) -> Path:
    name, seed = unit
    return Path(settings.out) / BASE if name == BASE else arm_dir(Path(settings.out), name, seed)


def unit_label(unit: Unit) -> str:
    name, seed = unit
    return name if seed is None else f"{name}/seed-{seed}"


class _Child:
    """One running unit: its process, its log and when it started."""

    def __init__(self, unit: Unit, cores: list[int], settings_path: Path, log: Path) -> None:
        self.unit, self.cores, self.log = unit, cores, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.handle = log.open("a")
        self.handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {unit_label(unit)} on cores {cores}\n")
        self.handle.flush()
        name, seed = unit
        command = [sys.executable, "-m", "curriculum.study_workers", str(settings_path), name, str(seed)]
        self.process = subprocess.Popen(command, stdout=self.handle, stderr=subprocess.STDOUT,
                                        env=worker_environment(cores))
        self.began = time.perf_counter()

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self.handle.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.handle.close()


def run_units_in_parallel(settings: CompareSettings, units: list[Unit], *, emit: Event) -> None:
    """Run `units` in child processes, `settings.workers` at a time, each on its own slice of the cores;
    raise CompareError naming every failed unit and its log once the others are done."""
    slots = core_slots(settings.workers)
    settings_path = Path(settings.out) / SETTINGS_FILE
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_bytes(pickle.dumps(settings))
    pending, running, failed, walls = list(units), {}, [], []
    emit("study", f"{len(units)} units on {len(slots)} workers (cores {' | '.join(','.join(map(str, s)) for s in slots)});"
                  f" each writes its progress to <unit>/{LOG}")
    with _signals_stop_the_study():
        try:
            while pending or running:
                for index, cores in enumerate(slots):
                    if index not in running and pending:
                        unit = pending.pop(0)
                        running[index] = _Child(unit, cores, settings_path, unit_directory(settings, unit) / LOG)
                        emit(unit_label(unit), f"started on cores {','.join(map(str, cores))} "
                                               f"(log: {running[index].log})")
                time.sleep(POLL_S)
                for index, child in list(running.items()):
                    code = child.poll()
                    if code is None:
                        continue
                    del running[index]
                    wall = time.perf_counter() - child.began
                    if code == 0:
                        walls.append(wall)
                        done = len(units) - len(pending) - len(running) - len(failed)
                        emit(unit_label(child.unit), f"finished in {wall / 60:.1f} min ({done}/{len(units)} units; "
                                                     f"{_eta(walls, len(pending) + len(running), len(slots))})")
                    else:
                        failed.append(child)
                        emit(unit_label(child.unit), f"failed (exit {code}): {_last_line(child.log)}")
        except BaseException:
            for child in running.values():
                child.stop()
            raise
        finally:
            settings_path.unlink(missing_ok=True)
    if failed:
        raise CompareError("; ".join(f"{unit_label(c.unit)} failed: {_last_line(c.log)} (log: {c.log})"
                                     for c in failed))


@contextlib.contextmanager
def _signals_stop_the_study():
    """While workers run, SIGTERM and SIGHUP (a `kill`, a closed terminal) raise SystemExit, so the parent's
    cleanup terminates its workers instead of dying alone and leaving them running."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a worker still exits when its parent is gone
        return

    def stop(number, _frame):
        raise SystemExit(128 + number)

    # a signal someone chose to ignore stays ignored: `nohup curriculum compare ...` must survive its terminal
    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(number) is signal.SIG_DFL}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def exit_with_parent(poll_s: float = POLL_S) -> None:
    """In a worker: exit as soon as the study process that started it is gone (a watcher thread). A killed
    parent cannot terminate its workers, and an orphaned one would keep training beside the rerun's."""
    parent = int(os.environ.get(PARENT_PID) or 0)
    if parent:
        exit_when_parent_changes(parent, poll_s=poll_s, code=1)


def _eta(walls: list[float], remaining: int, workers: int) -> str:
    """A rough ETA: the mean unit so far, times the units left, over the workers."""
    if not remaining:
        return "all done"
    minutes = sum(walls) / len(walls) * remaining / workers / 60
    return f"~{minutes:.0f} min left" if minutes < 120 else f"~{minutes / 60:.1f} h left"


def _last_line(log: Path) -> str:
    """The last non-empty line of a child's log (its error), without progress-bar carriage returns."""
    try:
        lines = [line.split("\r")[-1].strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else "empty log"


def pin_to_assigned_cores() -> list[int]:
    """In a child started with `worker_environment`: keep this process and torch's threads on its cores."""
    cores = os.environ.get("CURRICULUM_WORKER_CORES")
    if cores:
        os.sched_setaffinity(0, [int(core) for core in cores.split(",")])
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return sorted(os.sched_getaffinity(0))


def _child_main(settings_path: str, name: str, seed: str) -> None:
    """A child: pin to its cores, then do one unit exactly as the serial path does."""
    from curriculum.compare import StudyJobs, run_unit
    from curriculum.progress import CountingBar

    exit_with_parent()
    pin_to_assigned_cores()
    settings: CompareSettings = pickle.loads(Path(settings_path).read_bytes())
    unit: Unit = (name, None if seed == "None" else int(seed))

    bar = CountingBar(mininterval=30)  # a log file, not a terminal: a line every 30 s at most

    def emit(label: str, message: str) -> None:
        bar.close()
        print(f"[{label}] {message}", flush=True)

    try:
        run_unit(settings, unit, StudyJobs(settings, 0, emit=emit, on_progress=bar, on_benchmark=bar.begin))
    finally:
        bar.close()


if __name__ == "__main__":
    _child_main(*sys.argv[1:4])
