r"""Repair LaTeX that JSON or Python string escaping turned into control characters.

Public math data sets were often written by code that did not escape backslashes, so the reader decoded the
first letter of a LaTeX command as a string escape:

    "\\frac{1}{2}"  written as  "\frac{1}{2}"  read back as  "\x0crac{1}{2}"   (form feed + "rac")
    "\\boxed{5}"    written as  "\boxed{5}"    read back as  "\x08oxed{5}"     (backspace + "oxed")

The damage is undone only where it is unambiguous: a damaged character followed by the rest of a known
math-LaTeX command whose name ends at a non-letter. A control character followed by anything else (genuinely
binary text, an unknown command) is left alone, so validation can still reject the row.

    character        escape  repaired when followed by the rest of
    \x07 bell        \a      alpha, approx, angle, ...           always (never legitimate in text)
    \x08 backspace   \b      binom, boxed, begin, bar, beta, ... always
    \x0b vert. tab   \v      vec, varepsilon, vee, vdots, ...    always
    \x0c form feed   \f      frac, forall, fbox, ...             always
    \x0d return      \r      right, rho, rangle, rm, ...         always (a CR before a letter ends no line
                                                                 in these data sets; CR LF is untouched)
    \x09 tab         \t      theta, times, text, tilde, ...      names that are not English words: always
                             tan, to, tau                        only before math: after optional spaces
                                                                 comes one of  \ { ( [ ^ _ $  or a digit
    \x0a newline     \n      neq, nabla, not, notin, nleq, ...   always (no line starts with "eq ", "abla")
                             ne, nu, ni, neg, nmid, nexists,     never: a line may start with a variable
                             nparallel, nsim                     (`e`, `u`, `i`: "...\nu = 3" is ambiguous)
                                                                 or a wrapped word ("there\nexists")

A real tab or newline is left alone unless the letters after it spell one of those names and stop there:
"\tdraw(...)" in Asymptote code and "\number" (a newline before "number") are not commands, so they stay.
"""

from __future__ import annotations

import re

# The character each escape letter became, and the letter it stood for.
_ESCAPES = {"\x07": "a", "\x08": "b", "\x09": "t", "\x0a": "n", "\x0b": "v", "\x0c": "f", "\x0d": "r"}

# Commands repaired wherever their damaged form appears. Curated: the commands common in competition math
# problems and solutions; a command missing here stays damaged (and its row is rejected, see UNREPAIRABLE).
_ALWAYS = {
    "\x07": ("acute", "aleph", "alpha", "amalg", "angle", "approx", "approxeq", "arccos", "arcsin", "arctan", "arg",
             "ast", "asymp", "atop"),
    "\x08": ("backslash", "bar", "because", "begin", "beta", "beth", "bf", "big", "bigcap", "bigcirc", "bigcup",
             "bigg", "biggl", "biggr", "bigl", "bigm", "bigodot", "bigoplus", "bigotimes", "bigr", "bigsqcup",
             "bigstar", "bigtriangledown", "bigtriangleup", "biguplus", "bigvee", "bigwedge", "binom",
             "blacksquare", "bm", "bmod", "boldsymbol", "bot", "bowtie", "boxed", "breve", "bullet"),
    "\x0b": ("varepsilon", "varnothing", "varphi", "varpi", "varrho", "varsigma", "vartheta", "vartriangle",
             "vdash", "vdots", "vec", "vee", "veebar", "vert", "vline", "vspace"),
    "\x0c": ("fbox", "flat", "forall", "frac", "framebox", "frown"),
    "\x0d": ("raisebox", "rangle", "rbrace", "rbrack", "rceil", "ref", "rfloor", "rho", "right", "rightarrow",
             "rightharpoondown", "rightharpoonup", "rightleftharpoons", "rm", "root", "rtimes", "rvert", "rVert"),
    "\x09": ("tanh", "tbinom", "text", "textbf", "textit", "textnormal", "textrm", "textsf", "textstyle",
             "texttt", "textup", "tfrac", "therefore", "theta", "tilde", "times", "triangle", "triangledown",
             "triangleleft", "trianglelefteq", "triangleright", "trianglerighteq"),
    "\x0a": ("nabla", "ncong", "nearrow", "neq", "newline", "ngeq", "ngeqslant", "nleftarrow", "nleq",
             "nleqslant", "noindent", "nolimits", "nonumber", "not", "notin", "nrightarrow", "nsubseteq",
             "nsupseteq", "nwarrow"),
}
# Short names that are also English words or letters: repaired only in front of math (see the module docstring).
_BEFORE_MATH = {"\x09": ("tan", "tau", "to")}
_MATH_NEXT = r"(?=[ ]*[\\{(\[^_$0-9])"


def _branch(char: str, commands: tuple[str, ...], after: str = "") -> str:
    assert all(name[0] == _ESCAPES[char] for name in commands), f"a command in the list for {char!r} is misfiled"
    rests = sorted({name[1:] for name in commands}, key=len, reverse=True)
    return f"{re.escape(char)}(?:{'|'.join(map(re.escape, rests))})(?![A-Za-z]){after}"


def _pattern() -> re.Pattern:
    branches = [_branch(char, commands) for char, commands in _ALWAYS.items()]
    branches += [_branch(char, commands, _MATH_NEXT) for char, commands in _BEFORE_MATH.items()]
    return re.compile("|".join(branches))


_DAMAGE = _pattern()
_ANY_DAMAGED = re.compile("[\x07-\x0d]")

# Control characters that never belong in math text, so one left after repair marks the text unrepairable.
UNREPAIRABLE = frozenset("\x07\x08\x0b\x0c")
_UNREPAIRABLE = re.compile(f"[{''.join(sorted(UNREPAIRABLE))}]")


def repair_escapes(text: str) -> tuple[str, list[str]]:
    """Undo string-escape damage to LaTeX commands; return the text and the commands repaired.

    Args:
        text: a problem, answer or solution as read from a data file.

    Returns:
        `(repaired_text, commands)`: `commands` names every repaired command in order of appearance (a
        command repaired twice is listed twice); empty, with `text` unchanged, when nothing was damaged.

    Example:
        >>> repair_escapes("Compute $\\x0crac{1}{2} + \\x08inom{4}{2}$.")
        ('Compute $\\\\frac{1}{2} + \\\\binom{4}{2}$.', ['frac', 'binom'])
        >>> repair_escapes("Step 1\\tdraw the number\\number line")
        ('Step 1\\tdraw the number\\number line', [])
    """
    if _ANY_DAMAGED.search(text) is None:
        return text, []
    repaired: list[str] = []

    def fix(match: re.Match) -> str:
        found = match.group(0)
        name = _ESCAPES[found[0]] + found[1:]
        repaired.append(name)
        return "\\" + name

    return _DAMAGE.sub(fix, text), repaired


def unrepairable(text: str) -> str | None:
    """The first control character left that only escape damage explains (see UNREPAIRABLE), or None."""
    found = _UNREPAIRABLE.search(text)
    return None if found is None else found.group(0)
