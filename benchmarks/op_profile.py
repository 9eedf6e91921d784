"""Timing helpers of the profiling scripts: the median CPU time of a callable (dcpc_infer_profile.py,
dcpc_terms_profile.py), self CPU time per aten op, and where two such profiles differ (profile_step.py,
dcpc_infer_profile.py): which operations a method's extra time goes to."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, repeats: int, *, warmup: int = 0, digits: int = 3) -> float:
    """Median CPU time of the calling thread over ``repeats`` calls of ``fn``, in ms, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return round(1000 * statistics.median(times), digits)


def op_times(fn, n: int) -> dict[str, float]:
    """Self CPU time per aten op name, ms per call, over ``n`` calls of ``fn`` under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            fn()
    return {
        e.key: round(e.self_cpu_time_total / 1000 / n, 4)
        for e in prof.key_averages()
        if e.key.startswith("aten::") and e.self_cpu_time_total > 0
    }


def op_diff(ops: dict[str, float], first: dict[str, float], top: int = 10) -> str:
    """The ``top`` ops whose self CPU time per call differs most from ``first``'s, and the totals' difference."""
    diff = {k: ops.get(k, 0.0) - first.get(k, 0.0) for k in ops.keys() | first.keys()}
    worst = sorted(diff.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:top]
    total = sum(ops.values()) - sum(first.values())
    return f"self CPU ms per call minus the first's (aten ops; total {sum(ops.values()):.2f}, {total:+.2f}): " + (
        ", ".join(f"{k[6:]} {v:+.2f}" for k, v in worst)
    )
