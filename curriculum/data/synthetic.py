"""Synthetic arithmetic and word problems whose difficulty is set by knobs, deterministic by seed.

They are the embedded default data (no download needed) and a ground truth for scoring: more digits, more
operands and harder operations should mean lower pass rates. The knob values are kept as columns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from curriculum.data.records import Problem

OPERATION_SETS = {"add": "+", "addsub": "+-", "mixed": "+-*"}
_NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jo"]
_ITEMS = ["apples", "marbles", "stickers", "coins", "books", "shells", "cards", "pencils"]


@dataclass(frozen=True)
class Knobs:
    """Ranges the generator draws from; each problem records the values it got."""

    digits: tuple[int, ...] = (1, 2, 3)
    operands: tuple[int, ...] = (2, 3, 4)
    operations: tuple[str, ...] = ("add", "addsub", "mixed")
    word_fraction: float = 0.3

    def __post_init__(self) -> None:
        unknown = sorted(set(self.operations) - set(OPERATION_SETS))
        if unknown:
            raise ValueError(f"operations: unknown {unknown}; expected some of {', '.join(OPERATION_SETS)}")
        if not self.digits or not self.operands or not self.operations:
            raise ValueError("digits, operands and operations each need at least one value")
        if min(self.digits) < 1 or min(self.operands) < 2:
            raise ValueError("digits must be >= 1 and operands >= 2")
        if not 0 <= self.word_fraction <= 1:
            raise ValueError(f"word_fraction must be in [0, 1], got {self.word_fraction}")


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(1 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _arithmetic(rng: random.Random, digits: int, operands: int, operation_set: str) -> tuple[str, int]:
    symbols = OPERATION_SETS[operation_set]
    numbers = [_number(rng, digits) for _ in range(operands)]
    ops = [rng.choice(symbols) for _ in range(operands - 1)]
    if "*" in ops:  # keep products small enough to stay arithmetic, not long multiplication
        numbers = [n if i == 0 or ops[i - 1] != "*" else rng.randint(2, 9) for i, n in enumerate(numbers)]
    expression = " ".join(f"{n} {op}" for n, op in zip(numbers, ops, strict=False)) + f" {numbers[-1]}"
    return expression, eval(expression)  # noqa: S307 - built from our own digits and + - * only


def _word(rng: random.Random, digits: int, operands: int, operation_set: str) -> tuple[str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    total = _number(rng, digits)
    sentences = [f"{name} has {total} {item}."]
    for _ in range(operands - 1):
        op = rng.choice(OPERATION_SETS[operation_set])
        if op == "+":
            amount = _number(rng, digits)
            sentences.append(f"Then {name} gets {amount} more {item}.")
            total += amount
        elif op == "-":
            amount = rng.randint(1, max(1, total))
            sentences.append(f"Then {name} gives away {amount} {item}.")
            total -= amount
        else:
            factor = rng.randint(2, 5)
            sentences.append(f"Then the number of {item} {name} has is multiplied by {factor}.")
            total *= factor
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), total


def generate(n: int, seed: int = 0, knobs: Knobs = Knobs()) -> list[Problem]:
    """`n` problems, identical for the same seed; columns digits, operands, operation_set, style, difficulty."""
    if n < 0:
        raise ValueError("n must be non-negative")
    rng = random.Random(seed)
    problems, seen = [], set()
    attempts = 0
    while len(problems) < n and attempts < 50 * max(n, 1):
        attempts += 1
        digits = rng.choice(knobs.digits)
        operands = rng.choice(knobs.operands)
        operation_set = rng.choice(knobs.operations)
        style = "word" if rng.random() < knobs.word_fraction else "arithmetic"
        make = _word if style == "word" else _arithmetic
        body, answer = make(rng, digits, operands, operation_set)
        text = body if style == "word" else f"What is {body}?"
        if text in seen:
            continue
        seen.add(text)
        difficulty = (digits - 1) + (operands - 2) + list(OPERATION_SETS).index(operation_set)
        problems.append(Problem(problem=text, answer=str(answer), source="synthetic", extra={
            "digits": digits, "operands": operands, "operation_set": operation_set, "style": style,
            "difficulty": difficulty,
        }, file="synthetic", line=len(problems) + 1))
    return problems
