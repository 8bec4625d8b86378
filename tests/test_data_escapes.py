"""LaTeX escape damage (`\\frac` read back as form feed + "rac") is repaired on read, not rejected."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.data import PrepareOptions, prepare
from curriculum.data.escapes import repair_escapes, unrepairable
from curriculum.data.loaders import iter_source, resolve_source
from curriculum.data.readers import RawRow, Reject
from curriculum.data.records import Problem
from curriculum.data.sources import FieldMap
from curriculum.data.validate import to_problem


@pytest.mark.parametrize(("damaged", "expected", "commands"), [
    ("$\x0crac{1}{2}$", "$\\frac{1}{2}$", ["frac"]),                                    # \f form feed
    ("\x0corall x", "\\forall x", ["forall"]),
    ("$\x08inom{5}{2}$ and \x08oxed{7}", "$\\binom{5}{2}$ and \\boxed{7}", ["binom", "boxed"]),  # \b
    ("\x08egin{pmatrix} 1 \\end{pmatrix}", "\\begin{pmatrix} 1 \\end{pmatrix}", ["begin"]),
    ("$\x08ar{x} + \x08eta$", "$\\bar{x} + \\beta$", ["bar", "beta"]),
    ("$\x07lpha \x07pprox 2$, $\x07ngle A$", "$\\alpha \\approx 2$, $\\angle A$", ["alpha", "approx", "angle"]),
    ("$\x0bec{v} \x0bee \x0barepsilon$", "$\\vec{v} \\vee \\varepsilon$", ["vec", "vee", "varepsilon"]),  # \v
    ("$\\left( x \x0dight)$, $\x0dho$", "$\\left( x \\right)$, $\\rho$", ["right", "rho"]),           # \r
    ("$\x0dangle$ {\x0dm cm}", "$\\rangle$ {\\rm cm}", ["rangle", "rm"]),
    ("$\x09heta$, $2 \x09imes 3$", "$\\theta$, $2 \\times 3$", ["theta", "times"]),                # \t
    ("5 \x09ext{cm}", "5 \\text{cm}", ["text"]),
    ("\\qquad\x09extbf{(C)} 96", "\\qquad\\textbf{(C)} 96", ["textbf"]),  # as in MATH train, line 5521
    ("$\x09an(x)$, $\x09an^2 x$, $\x09an 30^\\circ$", "$\\tan(x)$, $\\tan^2 x$, $\\tan 30^\\circ$", ["tan"] * 3),
    ("$x \x09o \\infty$, $\x09au_0$", "$x \\to \\infty$, $\\tau_0$", ["to", "tau"]),
    ("$x \x0aeq 0$, $\x0aabla f$", "$x \\neq 0$, $\\nabla f$", ["neq", "nabla"]),                  # \n
    ("$a \x0aot= b$, $x \x0aotin S$", "$a \\not= b$, $x \\notin S$", ["not", "notin"]),
    ("$\x0crac12$", "$\\frac12$", ["frac"]),  # a digit ends a command name
])
def test_each_damaged_letter_is_repaired(damaged, expected, commands):
    assert repair_escapes(damaged) == (expected, commands)
    assert unrepairable(expected) is None


@pytest.mark.parametrize("text", [
    "name\tage\tscore",                              # a real tab between words
    "Find\tan integer n",                            # tab + "an" before a word, not math
    "x\to y",                                        # tab + "o" not before math
    "Let $\\tau = 2$.\tthe next",                    # already-correct LaTeX, a tab before "the"
    "for (int i = 0;\n\tdraw((0,0)--(1,1));\n\treal r = 2;",  # Asymptote code indented with tabs
    "the\number line",                               # newline before "number": not a command
    "Let\nu = 3 and\ne = 2",                         # newline before a variable: \nu, \ne are never repaired
    "such that there\nexists a prime,\nparallel lines", "the\nmid-point",  # wrapped English words
    "line one\r\nline two\r\n",                      # CR LF line endings
    "\x0cracs and \x08oxes",                         # the letters run on: not the command
    "\x0cog(3)",                                     # form feed before no known command
    "plain text, no damage",
])
def test_text_that_must_not_change(text):
    assert repair_escapes(text) == (text, [])


def test_unrepairable_names_control_characters_left_after_repair():
    assert unrepairable(repair_escapes("\x0cog(3)")[0]) == "\x0c"
    assert unrepairable("\x08\x07") == "\x08"
    assert unrepairable("tab\tnewline\nreturn\r") is None


def test_repair_runs_before_answer_extraction_and_strip():
    row = RawRow("f.jsonl", 3, {"problem": "\x0crac{1}{2} + \x0crac{1}{3} = ?",
                                "solution": "Sum is $\x08oxed{\x0crac{5}{6}}$.", "note": "\x09ext{ok}"})
    problem = to_problem(row, FieldMap(answer="solution", answer_rule="boxed"), "s")
    assert isinstance(problem, Problem)
    assert problem.problem == "\\frac{1}{2} + \\frac{1}{3} = ?"     # the leading form feed was not stripped
    assert problem.answer == "\\frac{5}{6}"                          # \boxed was found only after repair
    assert problem.extra["note"] == "\\text{ok}"
    assert problem.repairs == {"problem": ["frac", "frac"], "solution": ["boxed", "frac"], "note": ["text"]}
    clean = to_problem(RawRow("f.jsonl", 4, {"problem": "What is 1?", "answer": "1"}), FieldMap(), "s")
    assert clean.repairs == {}


def test_unrepairable_and_binary_text_is_rejected_with_field():
    fields = FieldMap()
    unknown = to_problem(RawRow("f.jsonl", 7, {"problem": "Compute \x0cog(3).", "answer": "1"}), fields, "s")
    assert isinstance(unknown, Reject) and (unknown.file, unknown.line, unknown.field) == ("f.jsonl", 7, "problem")
    assert unknown.reason.startswith("problem contains binary/control characters")
    assert "not a known LaTeX command" in unknown.reason
    binary = to_problem(RawRow("f.jsonl", 8, {"problem": "What is 2?", "answer": "\x00\x01\x02"}), fields, "s")
    assert isinstance(binary, Reject) and binary.field == "answer" and "binary" in binary.reason


@pytest.fixture
def damaged_jsonl(tmp_path):
    """JSON written without escaping backslashes: `\\f`, `\\b`, `\\t` in the file decode as control characters.

    (`\\circ` is escaped on line 3: an unescaped `\\c` is not a JSON escape, so that line would be malformed.)
    """
    path = tmp_path / "damaged.jsonl"
    lines = [
        r'{"problem": "What is 2 + 2?", "answer": "4"}',                                          # 1 clean
        r'{"problem": "Compute $\frac{1}{2} + \binom{4}{2}$.", "answer": "\frac{13}{2}"}',        # 2 repaired
        r'{"problem": "Find $\tan 45^\\circ$.", "answer": "1", "solution": "It is $\boxed{1}$."}',  # 3 repaired
        r'{"problem": "Compute \fog(3) for f.", "answer": "2"}',                                 # 4 unknown \f
        '{"problem": "What is 5 + 1?", "answer": "6\\u0000\\u0001\\u0002"}',                     # 5 binary
        r'{"problem": "Indented\tthe tab stays: 3 + 4?", "answer": "7"}',                          # 6 real tab
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prepare_cli_repairs_rows_and_reports_them(tmp_path, damaged_jsonl):
    out = tmp_path / "run" / "problems.parquet"
    result = CliRunner().invoke(cli, ["data", "prepare", "--source", str(damaged_jsonl), "--out", str(out),
                                      "--decontaminate", "none"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out).set_index("answer")
    assert sorted(frame.index) == ["1", "4", "7", "\\frac{13}{2}"]
    assert frame.loc["\\frac{13}{2}", "problem"] == "Compute $\\frac{1}{2} + \\binom{4}{2}$."
    assert frame.loc["1", "problem"] == "Find $\\tan 45^\\circ$."
    assert frame.loc["7", "problem"] == "Indented\tthe tab stays: 3 + 4?"
    assert "repaired LaTeX escape damage in 2 rows (4 fields" in result.output
    assert "frac 2" in result.output

    notes = [json.loads(line) for line in (out.parent / "problems.repairs.jsonl").open()]
    by_place = {(n["line"], n["field"]): n for n in notes}
    assert set(by_place) == {(2, "problem"), (2, "answer"), (3, "problem"), (3, "solution")}
    assert all(n["kind"] == "repaired" and n["file"] == str(damaged_jsonl) for n in notes)
    assert by_place[(2, "problem")]["commands"] == ["frac", "binom"]
    assert by_place[(3, "problem")]["commands"] == ["tan"]
    assert by_place[(3, "solution")]["commands"] == ["boxed"]

    rejects = [json.loads(line) for line in (out.parent / "problems.rejects.jsonl").open()]
    assert [(r["file"], r["line"], r["field"]) for r in rejects] == [
        (str(damaged_jsonl), 4, "problem"), (str(damaged_jsonl), 5, "answer")]
    assert all("binary/control characters" in r["reason"] for r in rejects)
    assert "2 rows rejected" in result.output


def test_prepare_library_summary_counts_repairs(tmp_path, damaged_jsonl):
    result = prepare([str(damaged_jsonl)], tmp_path / "p.parquet", options=PrepareOptions(decontaminate=()))
    summary = result.summaries[0]
    assert (summary.read, summary.invalid, summary.kept) == (6, 2, 4)
    assert (summary.repaired, summary.repaired_fields) == (2, 4)
    assert (result.repaired, result.repaired_fields) == (2, 4)
    assert result.repaired_commands == {"frac": 2, "binom": 1, "tan": 1, "boxed": 1}
    assert result.repairs_path == tmp_path / "p.repairs.jsonl"


@pytest.mark.slow
def test_real_math_train_row_with_a_tab_damaged_textbf(data_dir):
    """MATH train line 5521 has `\\qquad<TAB>extbf{(C)}`: the only damaged row in the shared data."""
    repaired = [item for item in iter_source(resolve_source("datasets_cfg/math.yaml"), data_dir_option=data_dir)
                if isinstance(item, Problem) and item.repairs]
    assert [(item.line, item.repairs) for item in repaired] == [(5521, {"problem": ["textbf"]})]
    assert "\\qquad\\textbf{(C)} 96" in repaired[0].problem
