"""Answer verification: math-verify behind one bounded, process-safe call.

`check(completion, gold)` extracts the final answer from a completion, parses both sides with math-verify and
compares them **gold first** (`verify(gold, prediction)` is not symmetric); what is extracted and how is
`curriculum.extraction`'s business, this module bounds and caches it. Every comparison runs in a pool
of worker processes with a per-task deadline: a worker that overruns is killed (SIGKILL), the caller gets a
"timeout" verdict, and a replacement is forked in milliseconds from a warm "zygote" process that imported
math-verify once. No `signal.alarm` anywhere (math-verify's own timeouts are switched off), so the bound
holds in any thread, in daemon threads of a trainer and inside subprocesses; the processes are started with
`subprocess`, so neither `multiprocessing` start methods nor a `__main__` guard are involved.

Verdicts are cached by (completion, gold, extraction) in a bounded LRU, so the several rewards that need
correctness in one GRPO step (accuracy, cosine) verify each completion once.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Literal

from curriculum.extraction import EXTRACTORS, extract_answer, judge, parse_extraction
from curriculum.lifetime import exit_when_parent_changes

Status = Literal["correct", "wrong", "no_answer", "unparseable_gold", "timeout", "error"]
STATUSES: tuple[str, ...] = ("correct", "wrong", "no_answer", "unparseable_gold", "timeout", "error")

DEFAULT_TIMEOUT_S = 5.0
CACHE_SIZE = 1 << 16
STARTUP_TIMEOUT_S = 120.0


class VerificationError(RuntimeError):
    """The verification workers could not be started (not raised for a bad completion or gold)."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check; `predicted` is the answer string extracted from the completion."""

    status: Status
    predicted: str | None = None
    detail: str = ""

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    @property
    def reward(self) -> float | None:
        """1.0 correct, None when the gold cannot be parsed (skip the example, never reward it), else 0.0."""
        if self.status == "unparseable_gold":
            return None
        return 1.0 if self.correct else 0.0


#: (prediction, gold) pairs that touch the answer types of MATH, GSM8K and OlympiadBench once.
_WARM_UP = (
    ("0.5", r"\frac{1}{2}"), ("1<x<2", "(1, 2)"), ("[0,1)", "[0, 1)"), ("3, 5", "5, 3"), ("1,234", "1234"),
    (r"\$54.60", r"\$ 54.60"), (r"2\text{ euros}", r"2 \text{ euros}"), (r"\text{Evelyn}", r"\text{Evelyn}"),
    (r"3\sqrt{13}", r"\sqrt{117}"), (r"\pi/2", r"\frac{\pi}{2}"), ("6-5i", "6 - 5i"), ("x=5", "5"),
    ("x^2+2x+1", "(x+1)^2"), (r"90^\circ", "90"), ("10\\%", "0.1"), (r"\sin^2 x", r"1-\cos^2 x"),
    (r"\log_2 8", "3"), (r"\binom{5}{2}", "10"), ("(1,2),(3,4)", "(3,4), (1,2)"), ("-7", "-7.0"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"(-\infty, 0) \cup \{1\}", r"(-\infty, 0) \cup\{1\}"),
)


def _serve(task_fd: int, result_fd: int) -> None:
    """A worker's loop: judge tasks in order until the task pipe closes."""
    inbox = Connection(task_fd, writable=False)
    outbox = Connection(result_fd, readable=False)
    while True:
        try:
            key, completion, gold, extraction = pickle.loads(inbox.recv_bytes())
        except (EOFError, OSError):
            return
        outbox.send((key, judge(completion, gold, extraction)))


def _zygote_main(control_fd: int, caller_pid: int) -> None:
    """Entry point of the zygote: import and warm math-verify once, then fork ready workers on request.

    Forking a warm process takes milliseconds where a fresh interpreter takes a second or more, so a worker
    killed for a timeout is replaced before the next call needs it. The zygote never starts a thread, so
    forking it is safe; it exits when the caller goes away, and its workers exit when it does.
    """
    import logging
    import select
    import signal
    import socket

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    control = socket.socket(fileno=control_fd)
    for prediction, gold in _WARM_UP:  # sympy's lazy imports and first calls, paid once for all workers
        judge(rf"\boxed{{{prediction}}}", gold, "auto")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed workers are reaped by the kernel
    zygote_pid = os.getpid()
    control.sendall(b"R")
    while True:
        readable, _, _ = select.select([control], [], [], 1.0)
        if os.getppid() != caller_pid:
            os._exit(0)
        if not readable:
            continue
        message, fds, _, _ = socket.recv_fds(control, 1, 2)
        if not message:
            os._exit(0)
        pid = os.fork()
        if pid == 0:  # the worker
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

            # a worker stuck in sympy must not outlive the zygote
            exit_when_parent_changes(zygote_pid, poll_s=1.0, code=0)
            try:
                _serve(*fds)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        control.sendall(pid.to_bytes(8, "little"))


# --------------------------------------------------------------------------------------------------------
# The pool (caller side)

#: Tasks queued ahead in a worker's pipe (saves a round trip per task), and the most bytes queued ahead:
#: well under the 64 KiB pipe buffer, so sending never blocks on a worker that is stuck in a task.
PREFETCH = 4
PREFETCH_BYTES = 32 * 1024
#: Of each task's `timeout_s`, the part kept for stopping an overrunning worker and answering the caller.
KILL_ALLOWANCE_S = 0.1


class _Zygote:
    """The warm process that forks workers (see `_zygote_main`)."""

    def __init__(self) -> None:
        import socket

        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        code = "import sys; from curriculum.verify import _zygote_main; _zygote_main(*map(int, sys.argv[1:]))"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        self.control.settimeout(STARTUP_TIMEOUT_S)
        try:
            ready = self.control.recv(1)
        except TimeoutError:
            ready = b""
        if ready != b"R":
            self.close()
            raise VerificationError(
                f"the verification process did not start within {STARTUP_TIMEOUT_S:g}s (exit code "
                f"{self.process.poll()}); its stderr is above"
            )
        self.control.settimeout(30.0)

    def fork(self) -> tuple[int, Connection, Connection]:
        """A new worker: (pid, task connection to write, result connection to read)."""
        import socket

        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            socket.send_fds(self.control, [b"F"], [task_r, result_w])
            pid_bytes = b""
            while len(pid_bytes) < 8:
                chunk = self.control.recv(8 - len(pid_bytes))
                if not chunk:
                    raise OSError("the verification zygote exited")
                pid_bytes += chunk
        except BaseException:
            os.close(task_w)
            os.close(result_r)
            raise
        finally:
            os.close(task_r)
            os.close(result_w)
        return int.from_bytes(pid_bytes, "little"), Connection(task_w, readable=False), Connection(result_r, writable=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.control.close()  # EOF: the zygote exits, and its idle workers see their pipes close
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Worker:
    """One forked worker, its two pipes, and the tasks sent to it that have no answer yet (in order)."""

    def __init__(self, zygote: _Zygote) -> None:
        self.pid, self.tasks, self.results = zygote.fork()
        self.inflight: deque[tuple[int, int]] = deque()  # (task index, message bytes)
        self.head_since = 0.0  # when the task at the head of `inflight` started

    def can_take(self, nbytes: int, queue_ahead: bool) -> bool:
        if not self.inflight:
            return True  # idle: blocked in recv, it reads any size at once
        queued = sum(size for _, size in self.inflight)
        return queue_ahead and len(self.inflight) < PREFETCH and queued + nbytes <= PREFETCH_BYTES

    def kill(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.tasks.close()
        self.results.close()

    def close(self) -> None:
        self.tasks.close()  # EOF: an idle worker exits by itself
        self.results.close()


class VerifierPool:
    """`size` worker processes, each judging its tasks in order, with a deadline per task.

    A task's clock starts when its worker starts on it (when the previous answer arrives, or when it is sent
    to an idle worker, but no later than the call itself for the first tasks); after `timeout_s` the worker
    is killed, the task gets "timeout", the tasks queued behind it go back to the queue, and a fresh worker
    is forked. One batch runs at a time (a lock serialises callers from several threads).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"workers must be >= 1, got {size}")
        self.size = size
        self.owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._zygote: _Zygote | None = None
        self._workers: list[_Worker] = []

    def _spawn(self) -> None:
        if self._zygote is not None and not self._zygote.alive():
            self._zygote.close()
            self._zygote = None
        if self._zygote is None:
            self._zygote = _Zygote()
        self._workers.append(_Worker(self._zygote))

    def _retire(self, worker: _Worker, queue: list[int]) -> tuple[int, int] | None:
        """Kill a worker; its queued-behind tasks go back to the queue; returns its head task, if any."""
        self._workers.remove(worker)
        worker.kill()
        head = worker.inflight.popleft() if worker.inflight else None
        queue.extend(index for index, _ in reversed(worker.inflight))
        worker.inflight.clear()
        return head

    def start(self) -> None:
        """Start the zygote and the workers now rather than on the first call."""
        with self._lock:
            while len(self._workers) < self.size:
                self._spawn()

    def run(
        self, tasks: Sequence[tuple[str, str, str]], timeout_s: float, started: float | None = None
    ) -> list[tuple[str, str | None, str]]:
        """Judge (completion, gold, extraction) tasks; returns (status, predicted, detail) per task.

        `started` (a `time.monotonic()` reading, default now) is the earliest a task's clock may start: pass
        the time the caller's call began so that the bound covers the bookkeeping before dispatch.
        """
        if not self._lock.acquire(blocking=False):
            self._lock.acquire()  # another thread's batch: our clock starts once it is done
            started = None
        try:
            spawning = len(self._workers) < self.size
            while len(self._workers) < self.size:
                self._spawn()  # the first call in a process also waits for the zygote (about a second)
            if started is None or spawning:
                started = time.monotonic()
            results: list[tuple[str, str | None, str] | None] = [None] * len(tasks)
            queue = list(range(len(tasks)))[::-1]  # a stack: next task at the end
            try:
                self._loop(tasks, timeout_s, started, queue, results)
            except BaseException:
                # A worker with tasks in flight would answer into the next batch: stop it.
                for worker in [w for w in self._workers if w.inflight]:
                    self._retire(worker, queue)
                raise
            return results  # type: ignore[return-value]
        finally:
            self._lock.release()

    def _loop(self, tasks, timeout_s: float, started: float, queue: list[int], results: list) -> None:
        # Give up a little before the bound, leaving time to stop the worker and answer within it.
        budget = timeout_s - min(KILL_ALLOWANCE_S, 0.05 * timeout_s)
        messages: dict[int, bytes] = {}
        first = True
        while queue or any(w.inflight for w in self._workers):
            for worker in list(self._workers):
                while queue:
                    index = queue[-1]
                    if index not in messages:
                        messages[index] = pickle.dumps((index, *tasks[index]))
                    # Near the end of a batch, no queueing ahead: a slow task must not hold others back.
                    queue_ahead = len(queue) > PREFETCH * len(self._workers)
                    if not worker.can_take(len(messages[index]), queue_ahead):
                        break
                    try:
                        worker.tasks.send_bytes(messages[index])
                    except OSError:  # it died: the task it was on costs an error, the rest go back
                        head = self._retire(worker, queue)
                        if head is not None:
                            results[head[0]] = ("error", None, "verification worker died")
                        self._spawn()
                        break
                    queue.pop()
                    if not worker.inflight:
                        worker.head_since = started if first else time.monotonic()
                    worker.inflight.append((index, len(messages[index])))
            first = False
            now = time.monotonic()
            waits = [w.head_since + budget - now for w in self._workers if w.inflight]
            ready = wait([w.results for w in self._workers if w.inflight], timeout=max(0.0, min(waits, default=0.0)))
            for conn in ready:
                worker = next(w for w in self._workers if w.results is conn)
                try:
                    index, verdict = worker.results.recv()
                except (EOFError, OSError):  # the worker died (not by our hand): its task costs an error
                    head = self._retire(worker, queue)
                    if head is not None:
                        results[head[0]] = ("error", None, "verification worker died")
                    self._spawn()
                    continue
                results[index] = verdict
                if worker.inflight and worker.inflight[0][0] == index:
                    worker.inflight.popleft()
                    worker.head_since = time.monotonic()
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.inflight and now >= worker.head_since + budget:
                    head = self._retire(worker, queue)
                    results[head[0]] = ("timeout", None, f"no verdict within {timeout_s:g}s")
                    if queue:  # otherwise the next call forks the replacement: return now
                        self._spawn()

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.close()
            self._workers.clear()
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None


_POOLS: dict[int, VerifierPool] = {}
_POOLS_LOCK = threading.Lock()


def default_workers() -> int:
    """One worker per available core, at most 8 (verification is a small share of a training step)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def get_pool(workers: int | None = None) -> VerifierPool:
    """The process-wide pool of that size (created lazily; a forked child gets its own)."""
    size = workers or default_workers()
    with _POOLS_LOCK:
        pool = _POOLS.get(size)
        if pool is None or pool.owner_pid != os.getpid():
            pool = _POOLS[size] = VerifierPool(size)
        return pool


def shutdown() -> None:
    """Stop every worker process of this process (they also stop on their own when it exits)."""
    with _POOLS_LOCK:
        pools = [pool for pool in _POOLS.values() if pool.owner_pid == os.getpid()]
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown)


# --------------------------------------------------------------------------------------------------------
# The verdict cache


class _VerdictCache:
    """A thread-safe LRU of verdicts keyed by a digest of (completion, gold, extraction)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[bytes, tuple[Verdict, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(completion: str, gold: str, extraction: str) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        for part in (completion, gold, extraction):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        return digest.digest()

    def get(self, key: bytes, timeout_s: float) -> Verdict | None:
        with self._lock:
            entry = self._data.get(key)
            # A timeout under a smaller budget says nothing about a larger one.
            if entry is None or (entry[0].status == "timeout" and entry[1] < timeout_s):
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: bytes, verdict: Verdict, timeout_s: float) -> None:
        with self._lock:
            self._data[key] = (verdict, timeout_s)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


_CACHE = _VerdictCache(CACHE_SIZE)


def cache_info() -> dict[str, int]:
    """Hits, misses and size of the verdict cache (misses = completions actually sent to the verifier)."""
    with _CACHE._lock:
        return {"hits": _CACHE.hits, "misses": _CACHE.misses, "size": len(_CACHE._data), "maxsize": _CACHE.maxsize}


def clear_cache() -> None:
    _CACHE.clear()


# --------------------------------------------------------------------------------------------------------
# Public entry points


def check(
    completion: str, gold: str, *, extraction: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Verdict:
    """Verify one completion against one gold answer, in at most `timeout_s` of worker time."""
    return check_batch([completion], [gold], extraction=extraction, timeout_s=timeout_s, workers=None)[0]


def check_batch(
    completions: Sequence[str],
    golds: Sequence[str],
    *,
    extraction: str | Sequence[str] = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
) -> list[Verdict]:
    """Verify many pairs in parallel across `workers` processes (default: one per core), cached.

    `extraction` is one rule for all, or one per item (for batches that mix sources). Each pair gets at most
    `timeout_s` (for the first pairs counted from this call's start; the worker is stopped a little before,
    so that the verdict arrives in time), so a call with one pair returns within `timeout_s`, and a batch of
    n distinct pairs within about ceil(n / workers) * timeout_s. Not counted: the one-time start of the
    verification processes (about a second, on the first call in a process) and waiting for another
    thread's batch to finish.
    """
    started = time.monotonic()
    if len(completions) != len(golds):
        raise ValueError(f"got {len(completions)} completions but {len(golds)} gold answers")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    rules = [extraction] * len(completions) if isinstance(extraction, str) else list(extraction)
    if len(rules) != len(completions):
        raise ValueError(f"got {len(rules)} extraction rules for {len(completions)} completions")
    for rule in set(rules):
        parse_extraction(rule)
    # A gold read from a typed column may be a number; a missing one (None) is unparseable.
    golds = ["" if gold is None else str(gold) if isinstance(gold, int | float) else gold for gold in golds]
    for index, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        if not isinstance(completion, str) or not isinstance(gold, str):
            raise TypeError(
                f"item {index}: completion and gold must be str, got {type(completion).__name__} and "
                f"{type(gold).__name__}"
            )

    verdicts: list[Verdict | None] = [None] * len(completions)
    todo: dict[bytes, list[int]] = {}  # distinct uncached pairs -> the items that share them
    for index, item in enumerate(zip(completions, golds, rules, strict=True)):
        key = _CACHE.key(*item)
        if key in todo:
            todo[key].append(index)
            continue
        verdict = _CACHE.get(key, timeout_s)
        if verdict is not None:
            verdicts[index] = verdict
        elif not item[1].strip():
            verdicts[index] = Verdict("unparseable_gold", None, "empty gold answer")
            _CACHE.put(key, verdicts[index], timeout_s)
        else:
            todo[key] = [index]
    if todo:
        keys = list(todo)
        tasks = [(completions[todo[k][0]], golds[todo[k][0]], rules[todo[k][0]]) for k in keys]
        for key, (status, predicted, detail) in zip(keys, get_pool(workers).run(tasks, timeout_s, started), strict=True):
            verdict = Verdict(status, predicted, detail)
            _CACHE.put(key, verdict, timeout_s)
            for index in todo[key]:
                verdicts[index] = verdict
    return verdicts  # type: ignore[return-value]


__all__ = [
    "DEFAULT_TIMEOUT_S", "EXTRACTORS", "STATUSES", "Verdict", "VerificationError", "VerifierPool", "cache_info",
    "check", "check_batch", "clear_cache", "default_workers", "extract_answer", "get_pool", "parse_extraction",
    "shutdown",
]
