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
    (r"\boxed{3} and then the answer is 4. Finally 5", "auto", "4"),  # the answer stated last wins
    (r"the answer is 4, so \boxed{3}", "auto", "3"),
    (r"first \boxed{1}, then \boxed{\frac{2}{3}}", "auto", r"\frac{2}{3}"),
    (r"\boxed{3} and then the answer is 4. Finally 5", "answer_is", "4"),
    (r"\boxed{3} and then the answer is 4. Finally 5", "last_number", "5"),
    ("The answer is $\\frac{1}{2}$. Check: 0.5", "auto", r"\frac{1}{2}"),
    ("so she earns 1,234 dollars", "auto", None),  # no marker, no number standing alone: math-verify's turn
    ("so she earns\n\n1,234", "auto", "1234"),
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


# ---------------------------------------------------------------------------------------------------------
# Issue 11: unboxed answers are read by math-verify, never cut down to their last digits


@pytest.mark.parametrize(("completion", "gold"), [
    (r"\frac{10}{9}", "10/9"),
    (r"-\frac{10}{9}", "-10/9"),
    (r"$[0,1)$", "[0,1)"),
    (r"We get $x = \frac{10}{9}$", "10/9"),
    (r"So the probability is $\dfrac{3}{8}$.", r"\frac{3}{8}"),
    (r"The roots form the interval $(-2, 5]$", "(-2, 5]"),
    (r"Therefore $x \geq 5$ is the solution.", "x >= 5"),
])
def test_unboxed_latex_answers_are_read_whole(completion, gold):
    verdict = check(completion, gold)
    assert verdict.status == "correct", verdict


@pytest.mark.parametrize(("completion", "gold"), [
    ("AZYUK2A", "2"),  # a digit inside a word is not an answer
    (r"$-[0,1)$", "1"),  # the end of an interval is not an answer
    (r"$\frac{10}{9}$", "9"),  # nor is a denominator
    (r"$x^2$", "2"),  # nor an exponent
    (r"the interval $[3, 18]$", "18"),
])
def test_digits_inside_latex_intervals_or_words_stay_wrong(completion, gold):
    assert not check(completion, gold).correct


@pytest.mark.parametrize(("completion", "gold"), [
    ("1 000", "1000"),  # a thousands space
    ("1000,99", "1000.99"),  # a decimal comma
    ("Soucis : 2,74 $ a..", "2.74"),
    (".4", "0.4"),  # a leading-dot decimal
    ("7,425,000", "7425000"),
    (r"\boxed{1 000}", "1000"),
    ("so she earns 1,234 dollars", "1234"),
])
def test_common_number_formats(completion, gold):
    assert check(completion, gold).correct


def test_a_comma_in_a_gold_answer_is_a_list_of_solutions():
    """Real MATH golds such as `-2,1` and `0,1` are lists; a decimal-comma reading would reward 0.1."""
    assert check(r"\boxed{0, 1}", "0,1").correct
    assert check(r"\boxed{1, 0}", "0,1").correct
    assert not check(r"\boxed{0.1}", "0,1").correct


@pytest.mark.parametrize(("completion", "gold", "status"), [
    (r"so the solutions are $\boxed{-2}$ and $\boxed{1}$.", "1, -2", "correct"),  # boxes of one answer
    (r"\boxed{1}, \boxed{2}, \boxed{3}", r"\{1,2,3\}", "correct"),
    (r"First \boxed{7} is wrong; after checking, the result is \boxed{8}.", "8", "correct"),  # prose between
    (r"First \boxed{7} is wrong; after checking, the result is \boxed{8}.", "7, 8", "wrong"),
    (r"\boxed{255} so far. Final Answer: The final answer is $10,455$. I hope it is correct.", "10455", "correct"),
    ("Final Answer: Jane started growing it 3 hours ago. I hope it is correct.", "3", "correct"),
    ("<answer>\\frac{1}{4}</answer>", "0.25", "correct"),
])
def test_explicit_answer_markers_come_first(completion, gold, status):
    assert check(completion, gold).status == status


def test_the_number_fallback_takes_only_a_number_standing_alone():
    assert extract_answer("step one: 3 + 4 = 7\nstep two: 7 * 2 = 14", "last_number") == "14"
    assert extract_answer("so the total is 18.", "last_number") == "18"
    assert extract_answer("so 18 apples", "last_number") is None
    assert extract_answer("AZYUK2A", "last_number") is None
    assert extract_answer(r"$\frac{10}{9}$", "last_number") is None
    assert extract_answer("x = 2x", "last_number") is None


def test_strict_boxed_extraction_ignores_everything_but_boxes():
    assert check("The answer is 5", "5", extraction="boxed").status == "no_answer"
    assert check(r"$\frac{1}{2}$", "1/2", extraction="boxed").status == "no_answer"
    assert check(r"so \boxed{\frac{1}{2}}", "1/2", extraction="boxed").correct


def test_escape_damage_is_repaired_on_both_sides():
    damaged_gold = "\x0crac{1}{2}"  # "\frac" read through a JSON escape
    assert check(r"\boxed{\frac{1}{2}}", damaged_gold).correct
    assert check(r"\boxed{0.5}", damaged_gold).correct
    assert check("$\\begin{pmatrix}\x0crac{7}{4}\\\\2\\end{pmatrix}$", r"\begin{pmatrix}\frac{7}{4}\\2\end{pmatrix}").correct
    assert check("\\boxed{\x08inom{4}{2}}", "6").correct
    # A tab or newline at verification time is whitespace, not damage: "\text" is not made out of "\t" + "ext".
    assert not check("$13$", "$\text{13}$").correct
