"""The public Python API: `from curriculum import ...` for a researcher's own TRL script, light to import, and
the example script that uses it trains on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import curriculum
from curriculum.buckets import BuildConfig, build, save
from tests.tiny_model import sums_with_known_pass_rates

REPO_ROOT = Path(__file__).resolve().parents[1]


def single_process_environment() -> dict:
    """This process's environment without a distributed setup that an earlier in-process engine left behind."""
    leaked = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    return {key: value for key, value in os.environ.items() if key not in leaked}


def test_import_is_light_and_heavy_names_load_on_first_use():
    code = (
        "import sys, curriculum\n"
        "light = 'torch' not in sys.modules and 'trl' not in sys.modules\n"
        "sampler = curriculum.CurriculumSampler\n"
        "still_light = 'torch' not in sys.modules\n"
        "trainer = curriculum.CurriculumGRPOTrainer\n"
        "print(light, still_light, 'trl' in sys.modules, trainer.__name__, sampler.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert done.stdout.split() == ["True", "True", "True", "CurriculumGRPOTrainer", "curriculum.sampler"]


def test_every_public_name_resolves_and_is_documented():
    for name in curriculum.__all__:
        value = getattr(curriculum, name)
        assert value.__doc__, f"curriculum.{name} has no docstring"
    assert set(curriculum.__all__) <= set(dir(curriculum))
    try:
        curriculum.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_example_trl_script_trains_with_the_curriculum(tiny_model_dir, tmp_path):
    problems, scores = sums_with_known_pass_rates(12)
    save(build(scores, problems, BuildConfig(num_buckets=3)), tmp_path / "buckets")

    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples/train_with_trl.py"), "--buckets", str(tmp_path / "buckets"),
         "--model", str(tiny_model_dir), "--out", str(out), "--steps", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=single_process_environment(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "checkpoint-2" / "curriculum_state.json").read_text())
    assert state["schedule"]["name"] == "linear"  # the curriculum's own state is checkpointed with TRL's
    assert state["difficulty"] is not None  # online difficulty learned from the groups
    assert (out / "model.safetensors").exists()
