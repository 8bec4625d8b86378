"""The command line: every verb listed with a description, and --help imports no heavy library."""

import subprocess
import sys

from curriculum.cli import VERBS


def test_help_lists_every_verb_without_importing_torch():
    code = ("import sys; from click.testing import CliRunner; from curriculum.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); print(r.output); "
            "print('HEAVY', [m for m in ('torch', 'transformers', 'trl', 'vllm', 'datasets') if m in sys.modules])")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for verb in ("data", "score", "build", "train", "eval", "report", "compare", "pipeline", "models"):
        assert verb in VERBS
        assert f"  {verb} " in output
    assert "HEAVY []" in output
