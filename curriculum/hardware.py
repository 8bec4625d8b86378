"""What the machine's arithmetic is good at: the one place that decides bf16 or fp32.

On a CPU, bf16 pays only where the matrix units do it natively: Intel AMX tiles, or the AVX512-BF16 dot
products of recent AMD EPYC and Intel Xeon (measured on an EPYC with AVX512-BF16 and no AMX:
`reports/bench_train.md`, a GRPO forward/backward under bf16 autocast ~2.6x faster than fp32, generation
~1.7x). Elsewhere bf16 matmuls are emulated and slower, so fp32 stays the CPU default there.
"""

from __future__ import annotations


def cpu_has_native_bf16() -> bool:
    """True where this CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16)."""
    import torch

    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            continue
    return False


def gpu_has_bf16() -> bool:
    """True where a CUDA GPU is present and supports bf16."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def bf16_pays(*, on_gpu: bool) -> bool:
    """Whether training and generation should run in bf16 on the device they will use."""
    return gpu_has_bf16() if on_gpu else cpu_has_native_bf16()
