"""curriculum: curriculum reinforcement learning (GRPO) of small language models on math.

Stages (each a file on disk, see DESIGN.md): data -> score -> build -> train -> eval -> report.
Heavy libraries (torch, transformers, trl, vllm) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
