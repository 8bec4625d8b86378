"""Answer verification: gold-first math-verify, answer extraction, caching, and a time bound that holds
in any thread and in subprocesses (real math-verify, real worker processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from curriculum.verify import (
    Verdict,
    cache_info,
    check,
    check_batch,
    clear_cache,
    extract_answer,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BOUND_S = 2.0  # small, so that the timeout tests stay fast; the default is 5 s
SLACK_S = 10.0  # room for a loaded 2-core machine; a hang would take minutes


def nested_frac(depth: int) -> str:
    text = "1"
    for _ in range(depth):
        text = r"\frac{1}{1+" + text + "}"
    return text


PATHOLOGICAL = {
    # sympy needs many seconds (more with depth) to simplify this continued fraction
    "nested_frac": r"So the answer is \boxed{" + nested_frac(40) + "}",
    "power_tower": r"\boxed{9^{9^{9^{9^{9}}}}}",
    "100kb_completion": ("step 12 then 7, " * 6500)[:100_000] + r" so \boxed{(10^{10})!}",
    "100kb_unclosed_boxes": r"\boxed{" * 14_300,
    "unicode_oddities": "答案 \\boxed{\u200b\u202e４２\ufe0f\U0001f600\u0301}\x00\udc80 \ufffd",
}


@pytest.mark.parametrize("prediction", [r"\frac{1}{2}", "0.5", "1/2", r"\dfrac12", r"\tfrac{1}{2}", "0.50"])
def test_equivalent_forms_of_one_half_are_correct(prediction):
    verdict = check(rf"Thus the result is \boxed{{{prediction}}}.", r"\frac{1}{2}")
    assert verdict == Verdict("correct", prediction)
    assert verdict.correct and verdict.reward == 1.0


@pytest.mark.parametrize(("prediction", "gold", "status"), [
    (r"\$54.60", r"\$ 54.60", "correct"),
    ("54.6", r"\$ 54.60", "correct"),
    ("54.06", r"\$ 54.60", "wrong"),
    (r"2 \text{ euros}", r"2 \text{ euros}", "correct"),
    ("2", r"2 \text{ euros}", "correct"),
    (r"3\text{ euros}", r"2 \text{ euros}", "wrong"),
    (r"\text{Evelyn}", r"\text{Evelyn}", "correct"),
    (r"90^\circ", r"90^\circ", "correct"),
    ("4", r"4 \text{ feet}", "correct"),
])
def test_math_units_and_text_answers(prediction, gold, status):
    assert check(rf"\boxed{{{prediction}}}", gold).status == status


@pytest.mark.parametrize(("prediction", "gold", "status"), [
    ("(2,4)", "(2,4)", "correct"),
    ("(4,2)", "(2,4)", "wrong"),  # an ordered pair is not a set
    ("(4,5,7), (1,8,19), (2,7,13)", "(1,8,19), (2,7,13), (4,5,7)", "correct"),  # a list of solutions is a set
    ("(1,8,19), (2,7,13)", "(1,8,19), (2,7,13), (4,5,7)", "wrong"),
    (r"\left(-\frac{1}{2}, \frac{7}{2}\right)", r"(-\frac{1}{2}, \frac{7}{2})", "correct"),
    (r"[0.5, 8]", r"[\frac{1}{2}, 8]", "correct"),
    (r"(\frac{1}{2}, 8]", r"[\frac{1}{2}, 8]", "wrong"),  # open vs closed end
    (r"(-\infty,-5)", r"(-\infty,-5)", "correct"),
    (r"(-\infty,-5]", r"(-\infty,-5)", "wrong"),
    (r"(-\sqrt{11},-2)\cup(\sqrt{11},9)", r"(-\sqrt{11},-2)\cup (\sqrt{11},9)", "correct"),
])
def test_olympiadbench_tuples_and_intervals(prediction, gold, status):
    assert check(rf"\boxed{{{prediction}}}", gold).status == status


def test_every_olympiadbench_tuple_and_interval_matches_itself(data_dir):
    rows = [json.loads(line) for line in (data_dir / "eval/olympiadbench.jsonl").open()]
    rows = [row for row in rows if row["answer_type"] in ("Tuple", "Interval")]
    assert len(rows) > 30
    verdicts = check_batch([rf"\boxed{{{row['answer']}}}" for row in rows], [row["answer"] for row in rows])
    assert [row["answer"] for row, v in zip(rows, verdicts, strict=True) if not v.correct] == []


def test_gold_goes_first():
    """The prediction "1<x<2" against the gold interval (1, 2): math-verify only relates an inequality
    to an interval when the interval is the prediction, so the argument order decides the verdict."""
    from math_verify import parse, verify

    gold, prediction = "$(1, 2)$", "$1<x<2$"
    assert verify(parse(prediction), parse(gold)) is True  # the swapped order would call it correct
    assert verify(parse(gold), parse(prediction)) is False
    assert check(r"\boxed{1<x<2}", "(1, 2)").status == "wrong"
    assert check(r"\boxed{(1, 2)}", "1<x<2").status == "correct"


@pytest.mark.parametrize("gold", ["", "   ", r"\text{}", "$$", r"\boxed{}"])
@pytest.mark.parametrize("completion", [r"\boxed{1}", r"\boxed{\text{}}", "no answer at all"])
def test_unparseable_gold_is_skipped_never_rewarded(gold, completion):
    verdict = check(completion, gold)
    assert verdict.status == "unparseable_gold"
    assert verdict.reward is None and not verdict.correct


@pytest.mark.parametrize(("completion", "extraction", "expected"), [
    (r"\boxed{3} and then the answer is 4. Finally 5", "auto", "3"),
    (r"first \boxed{1}, then \boxed{\frac{2}{3}}", "auto", r"\frac{2}{3}"),
    (r"\boxed{3} and then the answer is 4. Finally 5", "answer_is", "4"),
    (r"\boxed{3} and then the answer is 4. Finally 5", "last_number", "5"),
    ("The answer is $\\frac{1}{2}$. Check: 0.5", "auto", r"\frac{1}{2}"),
    ("so she earns 1,234 dollars", "auto", "1234"),
    ("<think>2+2</think><answer>4</answer> 9", "auto", "4"),
    ("<think>2+2</think><answer>4</answer> 9", "last_number", "9"),
    ("work work\n#### 72", "auto", "72"),
    (r"\boxed{3} then 4", "answer_is,last_number", "4"),
    ("no digits here", "auto", None),
    (r"\boxed{}", "boxed", None),
])
def test_answer_extraction_order_and_sources(completion, extraction, expected):
    assert extract_answer(completion, extraction) == expected


def test_extraction_is_configurable_per_item():
    completion = r"\boxed{3} and then the answer is 4. Finally 5"
    verdicts = check_batch([completion] * 3, ["5"] * 3, extraction=["auto", "answer_is", "last_number"])
    assert [v.status for v in verdicts] == ["wrong", "wrong", "correct"]


def test_no_answer_and_bad_arguments():
    assert check("I am not sure.", "72") == Verdict("no_answer", None)
    with pytest.raises(ValueError, match="unknown answer extraction 'box'"):
        check(r"\boxed{1}", "1", extraction="box")
    with pytest.raises(ValueError, match="2 completions but 1 gold"):
        check_batch(["a", "b"], ["1"])
    with pytest.raises(TypeError, match="item 0"):
        check_batch([None], ["1"])
    assert [v.status for v in check_batch([r"\boxed{72}"] * 2, [72, None])] == ["correct", "unparseable_gold"]


def test_repeated_pairs_are_verified_once():
    clear_cache()
    completions = [r"\boxed{7}", r"\boxed{8}", r"\boxed{7}", "seven"]
    first = check_batch(completions, ["7"] * 4)
    assert [v.status for v in first] == ["correct", "wrong", "correct", "no_answer"]
    assert cache_info()["misses"] == 3  # the duplicate rides along with its twin
    assert check_batch(completions, ["7"] * 4) == first
    assert cache_info()["misses"] == 3 and cache_info()["hits"] == 4


def test_a_timeout_verdict_is_not_reused_under_a_larger_budget():
    from curriculum import verify

    clear_cache()
    key = verify._CACHE.key(r"\boxed{1}", "1", "auto")
    verify._CACHE.put(key, Verdict("timeout"), 0.5)
    assert check(r"\boxed{1}", "1", timeout_s=0.5).status == "timeout"
    assert check(r"\boxed{1}", "1", timeout_s=5.0).status == "correct"


def _run_all(results: dict) -> None:
    for name, completion in PATHOLOGICAL.items():
        start = time.monotonic()
        verdict = check(completion, "1", timeout_s=BOUND_S)
        results[name] = (verdict.status, time.monotonic() - start)


def test_pathological_inputs_are_bounded_in_a_worker_thread():
    check("warm up", "1")  # the workers' start-up is not part of a call's bound
    results: dict = {}
    thread = threading.Thread(target=_run_all, args=(results,), daemon=True)
    thread.start()
    thread.join(timeout=len(PATHOLOGICAL) * (BOUND_S + SLACK_S))
    assert not thread.is_alive(), f"verification hung in a worker thread; finished: {results}"
    assert set(results) == set(PATHOLOGICAL)
    assert results["nested_frac"][0] == "timeout"
    assert results["power_tower"][0] == "timeout"
    assert all(status in ("timeout", "wrong", "no_answer") for status, _ in results.values()), results
    # each call comes back once its bound has passed (plus process bookkeeping), never much later
    assert max(elapsed for _, elapsed in results.values()) < BOUND_S + SLACK_S, results


def test_pathological_inputs_are_bounded_in_a_subprocess():
    script = (
        "import json, sys\n"
        "from tests.test_verify import PATHOLOGICAL\n"
        "from curriculum.verify import check_batch\n"
        "names = list(PATHOLOGICAL)\n"
        f"verdicts = check_batch([PATHOLOGICAL[n] for n in names], ['1'] * len(names), timeout_s={BOUND_S})\n"
        "print(json.dumps({n: v.status for n, v in zip(names, verdicts)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
        timeout=len(PATHOLOGICAL) * (BOUND_S + SLACK_S),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    assert statuses["nested_frac"] == "timeout" and statuses["power_tower"] == "timeout"
    assert set(statuses.values()) <= {"timeout", "wrong", "no_answer"}


def test_workers_survive_a_timeout():
    check(PATHOLOGICAL["nested_frac"], "1", timeout_s=0.5)
    assert check(r"\boxed{12}", "12", timeout_s=BOUND_S).status == "correct"
    verdicts = check_batch([r"\boxed{" + str(i) + "}" for i in range(20)], [str(i) for i in range(20)])
    assert all(v.correct for v in verdicts)


def test_concurrent_callers_get_their_own_verdicts():
    from concurrent.futures import ThreadPoolExecutor

    def job(offset: int) -> list[str]:
        completions = [rf"\boxed{{{offset + i}}}" for i in range(10)]
        golds = [str(offset + i) if i % 2 == 0 else "-1" for i in range(10)]
        return [v.status for v in check_batch(completions, golds)]

    with ThreadPoolExecutor(max_workers=4) as executor:
        outcomes = list(executor.map(job, [100, 200, 300, 400]))
    assert outcomes == [["correct", "wrong"] * 5] * 4


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_verification_processes_exit_with_their_caller():
    script = (
        "import os\n"
        "from curriculum.verify import check, get_pool\n"
        "check('so \\\\boxed{1}', '1')\n"
        "pool = get_pool()\n"
        "print(pool._zygote.process.pid, *[w.pid for w in pool._workers], flush=True)\n"
        "os.kill(os.getpid(), 9)\n"  # no atexit, no clean-up: only the processes' own watch can save us
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) >= 2, done.stderr[-2000:]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    assert [pid for pid in pids if _running(pid)] == []


def test_a_worker_that_dies_costs_one_error_verdict_not_a_hang():
    import os
    import signal

    from curriculum.verify import get_pool

    check("warm up", "1")
    pool, outcome = get_pool(), {}
    thread = threading.Thread(target=lambda: outcome.setdefault("verdict", check(PATHOLOGICAL["nested_frac"], "1",
                                                                                 timeout_s=60)))
    thread.start()
    busy, deadline = [], time.monotonic() + 30
    while not busy and time.monotonic() < deadline:
        busy = [worker.pid for worker in list(pool._workers) if worker.inflight]
        time.sleep(0.05)
    assert busy, "the task never reached a worker"
    os.kill(busy[0], signal.SIGKILL)  # as the OOM killer would
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome["verdict"].status == "error"
    assert check(r"\boxed{2}", "2").correct
