"""Runtime plumbing under the pipeline: the CPU and device, threads, malloc, torchrun, and the output guard.

`cpu` (the CPU's flags, no torch), `device` (CPU/GPU, bf16, threads), `memory` (glibc malloc),
`distributed` (torchrun ranks, DDP), `paths` (shipped models, the output guard, atomic writes).
"""
