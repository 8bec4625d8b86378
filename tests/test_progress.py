"""The progress bar of long evaluations: a total (so a rate and an ETA) once the set is named."""

from __future__ import annotations

from curriculum.progress import CountingBar


def test_a_named_set_gets_a_bar_with_its_total_and_the_next_set_a_new_one(capsys):
    bar = CountingBar(mininterval=0)
    bar.begin("heldout", 300)
    bar(32)
    bar(64)
    bar.begin("gsm8k", 100)
    bar(32)
    bar.close()
    shown = capsys.readouterr().err
    assert "eval heldout" in shown and "64/300" in shown
    assert "eval gsm8k" in shown and "32/100" in shown


def test_without_a_name_a_count_going_back_starts_a_new_bar(capsys):
    bar = CountingBar(mininterval=0)
    bar(50)
    bar(10)  # the next benchmark's first chunk
    assert bar.bar.n == 10
    bar.close()
    assert "50problem" in capsys.readouterr().err
