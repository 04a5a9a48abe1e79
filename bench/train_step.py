"""Training-step speed per architecture and batch size (synthetic inputs, no data loading).

    python bench/train_step.py                          # every arch at batch 64 and 128, eager
    python bench/train_step.py --arch fer-resnet-fast16 --batch 128 --size 48 40   # progressive resizing
    python bench/train_step.py --arch fer-resnet --batch 128 --compile
    python bench/train_step.py --arch fer-resnet --batch 128 --profile   # where a step's time goes

One optimiser step = forward under bfloat16 autocast where the CPU runs it natively, else float32
(as `ferkit train --amp`: `ferkit.runtime.device.amp_dtype`) + backward + Adam,
channels_last, as `ferkit train --amp`. Prints images/s, the fastest of --repeats timed blocks,
and "x first": the speed-up over the first row, the median over rounds of the ratio of their
blocks. The archs and image sizes of one batch size are timed in turns (a block of each,
--repeats rounds, every other one in reverse order), so that a change in this shared machine's
speed hits all of them alike; compare rows by "x first", which pairs blocks run side by side.
This is how results/resnet.sh chose its batch size; speed does not depend on the data.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ferkit.runtime.device import amp_dtype, autocast, describe_cpu
from ferkit.runtime.memory import keep_freed_memory
from ferkit.models import ARCHS, build_model


def make_step(arch: str, batch: int, compile_: bool, size: int = 48):
    """One optimiser step of `arch` on a fixed synthetic batch of size x size images, as a function
    of no arguments, already run three times (warm-up, and compilation with `compile_`).
    glibc keeps freed memory, as in `ferkit train` (`bench/malloc.py` compares the two)."""
    keep_freed_memory()
    model = build_model(arch, "softmax", 7).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))

    def step() -> None:
        with autocast("cpu", True):  # bfloat16 where the CPU runs it natively, else float32 (as --amp)
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    run = torch.compile(step) if compile_ else step
    for _ in range(3):
        run()
    return run


def images_per_s(arch: str, batch: int, compile_: bool, steps: int, repeats: int) -> float:
    times = block_times_in_turns({arch: make_step(arch, batch, compile_)}, steps, repeats)[arch]
    return steps * batch / min(times)


def block_times_in_turns(runs: dict, steps: int, repeats: int) -> dict:
    """{name: [seconds of each round's block]} of step functions timed in turns: `repeats` rounds
    of a block of `steps` steps of each, every other round in reverse order (A B, B A, ...), so
    that a steady drift of the machine's speed favours no one."""
    times: dict = {name: [] for name in runs}
    for r in range(repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            for _ in range(steps):
                runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def speedups(times: dict) -> dict:
    """{name: median over rounds of (first run's block time / this run's)}: a ratio of blocks run
    next to each other, steadier on a machine whose speed drifts than a ratio of the fastest blocks."""
    first = next(iter(times.values()))
    return {name: statistics.median(a / b for a, b in zip(first, t)) for name, t in times.items()}


def peak_gflops() -> float | None:
    """The CPU's float32 peak by the usual formula, cores x 2 FMA units x 8 lanes (256-bit AVX2) x 2
    FLOP x the nominal clock of /proc/cpuinfo; None where the clock is not known. AVX-512 doubles the
    lanes on Intel; AMD's Zen 4 runs it on the same 256-bit units, so 8 lanes is its peak too."""
    try:
        mhz = next(float(l.split(":")[1]) for l in open("/proc/cpuinfo") if l.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None
    return torch.get_num_threads() * 2 * 8 * 2 * mhz / 1000


def step_flops(arch: str, size: int = 48) -> float:
    """FLOP of one training image: forward + backward = 3 x the forward multiply-adds, 2 FLOP each."""
    from ferkit.models import count_macs
    return 3 * 2 * count_macs(build_model(arch, "softmax", 7), size)


def profile(arch: str, batch: int, steps: int, top: int = 12) -> str:
    """The `top` operators by own CPU time per step, with their input shapes (torch.profiler), and the
    step's arithmetic rate against the CPU's peak."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run = make_step(arch, batch, False)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    ips = steps * batch / (time.perf_counter() - start)
    gflops, peak = ips * step_flops(arch) / 1e9, peak_gflops()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            run()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    share = f", {100 * gflops / peak:.0f}% of the {peak:.0f} GFLOP/s float32 peak" if peak else ""
    lines = [f"{arch}, batch {batch}: {total / steps / 1000:.0f} ms of operator time per step; unprofiled "
             f"{ips:.0f} img/s = {gflops:.0f} GFLOP/s{share} ({'bf16' if amp_dtype(torch.device('cpu')) else 'fp32'})"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        shape = e.input_shapes[0] if e.input_shapes else []
        lines.append(f"  {100 * e.self_cpu_time_total / total:5.1f}%  {e.key:<34}{str(shape)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--batch", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--size", nargs="+", type=int, default=[48], help="image sides (48; smaller: progressive resizing)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the step (needs a C++ compiler)")
    ap.add_argument("--profile", action="store_true", help="print where a step's time goes instead of img/s")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"cpu: {describe_cpu()}")
    if args.profile:
        for arch in args.arch:
            for batch in args.batch:
                print(profile(arch, batch, args.steps), flush=True)
        return
    print(f"{'arch':<20}{'batch':>6}{'size':>6}{'img/s':>8}{'x first':>9}  ({torch.get_num_threads()} threads, "
          f"{'compiled' if args.compile else 'eager'}, {args.repeats} rounds in turns)")
    for batch in args.batch:
        runs = {(arch, size): make_step(arch, batch, args.compile, size) for arch in args.arch for size in args.size}
        times = block_times_in_turns(runs, args.steps, args.repeats)
        for (arch, size), ratio in speedups(times).items():
            ips = args.steps * batch / min(times[arch, size])
            print(f"{arch:<20}{batch:>6}{size:>6}{ips:>8.0f}{ratio:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
