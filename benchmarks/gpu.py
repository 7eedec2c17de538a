"""Section 8: GPU. The sections run on the CPU; with CUDA present, section 3 adds CUDA rows.
The engine's own GPU check (fp32/bf16/fp16 agreement, host-resident data, DDP) is
``make gpu-check`` (scripts/gpu_check.sh), whose figures live in BENCHMARKS.md's "GPU" section."""

from __future__ import annotations

import torch

from benchmarks.common import Section, Settings


def section(s: Settings) -> Section:
    sec = Section(8, "GPU (this benchmark run)", "Whether this run had a GPU, and what to run on one.")
    if torch.cuda.is_available():
        sec.notes.append(f"GPU present ({torch.cuda.get_device_name(0)}): section 3 has CUDA rows.")
    else:
        sec.notes.append("No GPU was available to this run: every figure above is CPU-only. On a CUDA machine, "
                         "rerun `make bench-quick` (section 3 adds CUDA rows) and `make gpu-check`.")
    return sec
