"""curriculum: curriculum reinforcement learning (GRPO) of small language models on math.

Stages (each a file on disk, see DESIGN.md): data -> score -> build -> train -> eval -> report.

The public Python API, for a script of your own around TRL (see `examples/train_with_trl.py`):

    from curriculum import CurriculumGRPOTrainer, get_reward, load_buckets

    dataset, manifest = load_buckets("runs/x/buckets")
    trainer = CurriculumGRPOTrainer(model=..., args=GRPOConfig(...), train_dataset=dataset,
                                    reward_funcs=[get_reward("accuracy")], schedule="linear")

`import curriculum` stays light: every name below is imported from its module the first time it is used,
so torch, transformers and TRL load only when a name that needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    # training with TRL
    "CurriculumGRPOTrainer": "curriculum.training.trainer",
    "CurriculumSampler": "curriculum.sampler",
    "OnlineDifficulty": "curriculum.difficulty",
    "get_schedule": "curriculum.schedules",
    "schedule_names": "curriculum.schedules",
    "load_buckets": "curriculum.training.run",
    "resolve_model": "curriculum.models",
    # rewards and verification
    "get_reward": "curriculum.rewards",
    "parse_reward_spec": "curriculum.rewards",
    "check": "curriculum.verify",
    "check_batch": "curriculum.verify",
    "Verdict": "curriculum.verify",
    # stages
    "score": "curriculum.scoring",
    "ScoreConfig": "curriculum.scoring",
    "get_engine": "curriculum.rollout",
    "build": "curriculum.buckets",
    "build_from_column": "curriculum.buckets",
    "BuildConfig": "curriculum.buckets",
    "evaluate": "curriculum.evaluation",
    "EvalSettings": "curriculum.evaluation",
}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from curriculum.buckets import BuildConfig, build, build_from_column  # noqa: F401
    from curriculum.difficulty import OnlineDifficulty  # noqa: F401
    from curriculum.evaluation import EvalSettings, evaluate  # noqa: F401
    from curriculum.models import resolve_model  # noqa: F401
    from curriculum.rewards import get_reward, parse_reward_spec  # noqa: F401
    from curriculum.rollout import get_engine  # noqa: F401
    from curriculum.sampler import CurriculumSampler  # noqa: F401
    from curriculum.schedules import get_schedule, schedule_names  # noqa: F401
    from curriculum.scoring import ScoreConfig, score  # noqa: F401
    from curriculum.training.run import load_buckets  # noqa: F401
    from curriculum.training.trainer import CurriculumGRPOTrainer  # noqa: F401
    from curriculum.verify import Verdict, check, check_batch  # noqa: F401


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'curriculum' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
