"""Gold-answer extraction, pinned against every raw GSM8K and MATH train row of the shared data."""

import json

import pytest

from curriculum.data.extract import extract_answer, extract_gsm8k, last_boxed


@pytest.mark.parametrize(("raw", "expected"), [
    ("so 3 + 4 = 7\n#### 1,234", "1234"),
    ("#### 72.", "72"),
    ("no marker here", None),
])
def test_gsm8k_rule(raw, expected):
    assert extract_gsm8k(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (r"first \boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\left\{ 1, \{2\} \right\}}", r"\left\{ 1, \{2\} \right\}"),
    (r"answer \fbox{x^{2}}", "x^{2}"),
    (r"so $\boxed 5$.", "5"),
    (r"\boxed{unclosed", None),
    ("nothing boxed", None),
])
def test_last_boxed_handles_nesting(raw, expected):
    assert last_boxed(raw) == expected


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown answer rule 'nope'"):
        extract_answer("x", "nope")


@pytest.mark.parametrize(("file", "field", "rule"), [
    ("train/gsm8k_train.jsonl", "solution_raw", "gsm8k"),
    ("train/math_train.jsonl", "solution", "boxed"),
    ("eval/gsm8k_test.jsonl", "solution_raw", "gsm8k"),
])
def test_every_shared_row_matches_its_pre_extracted_answer(data_dir, file, field, rule):
    mismatches, rows = [], 0
    for line in (data_dir / file).open():
        row = json.loads(line)
        rows += 1
        if extract_answer(row[field], rule) != row["answer"]:
            mismatches.append(row["answer"])
    assert rows > 1000
    assert mismatches == []
