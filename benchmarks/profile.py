"""`python -m benchmarks.profile MODEL METHOD`: where one benchmark workload spends its time, op by
op (torch.profiler).

For a missed target: prints the profiler's table of the workload's ops (sorted by self time)
and writes a Chrome trace beside it, e.g.
    python -m benchmarks.profile vgg16 layer_to_layer --width 0.25 --out /tmp/prof
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from benchmarks.workload import METHOD_SETUPS, Workload, run_workload
from trainables.measure import resolve_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model")
    p.add_argument("method", choices=list(METHOD_SETUPS))
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--rows", type=int, default=25)
    p.add_argument(
        "--out", type=Path, default=None, help="folder for the Chrome trace (trace.json)"
    )
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    work = Workload(
        args.model, args.method, args.width, args.batch_size, args.batches, device=device.type
    )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        runs = run_workload(work)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    print("stages (timed epoch, s):", ", ".join(f"{r.index}: {r.seconds:.3f}" for r in runs))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.out / f"{args.model}-{args.method}-trace.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
