#!/usr/bin/env python3
"""Prints each benchmark target beside its in-run baseline, from criterion's last results.

Run after `cargo bench` (any subset): targets whose results are missing are listed as such.
Medians are criterion's median of its per-sample means, in target/criterion/*/new.
Exit status 1 when a measured target is missed, so a script can tell.

A paired benchmark (benches/common/paired.rs) times its baseline beside it in every sample and
its value is the ratio itself; the separate absolute benchmarks of the same pair are printed
below it for scale ("for scale" lines are not judged: their windows differ).

    python3 scripts/bench-ratios.py [TARGET_DIR]
"""

import json
import signal
import sys
from pathlib import Path

GIB = 1 << 30

# (group, benchmark, baseline, kind, limit)
#   ratio_max: benchmark median / baseline median at most `limit`
#   under_ms:  benchmark median under `limit` milliseconds
#   gbps_min:  `limit` = (bytes per iteration, least GB/s)
#   paired_max: the paired benchmark's median ratio at most `limit` (`baseline` is None)
#   paired_speed_min: the inverse of that ratio (speed relative to baseline) at least `limit`
#   scale:     benchmark median / baseline median, printed, not judged
#   scale_speed: baseline median / benchmark median, printed, not judged
TARGETS = [
    ("record_ratios", "apply_vs_baseline", None, "paired_max", 1.3),
    ("record_32B", "apply", "baseline", "scale", None),
    ("record_ratios", "trace_event_vs_baseline", None, "paired_max", 1.3),
    ("record_32B", "trace_event", "baseline", "scale", None),
    ("record_ratios", "two_threads_vs_one_thread", None, "paired_max", 1.1),
    ("trace_two_threads", "two_threads", "one_thread", "scale", None),
    ("record_ratios", "checkpoint_vs_memcpy", None, "paired_max", 3.0),
    ("checkpoint_1MiB", "checkpoint", "memcpy_1MiB", "scale", None),
    ("replay_ratios", "replay_vs_apply_decoded", None, "paired_max", 1.5),
    ("replay_throughput", "replay", "apply_decoded", "scale", None),
    ("history_10M", "random_position", "apply_interval", "under_ms", 5.0),
    ("history_10M", "step_back_1000", "apply_interval", "under_ms", 1.0),  # per step
    ("open_1GiB", "open_and_recover", "map_and_sum", "gbps_min", (GIB, 1.0)),
    ("export_ratios", "writer_vs_lz4", None, "paired_speed_min", 0.5),
    ("export_throughput", "writer", "lz4_same_bytes", "scale_speed", None),
    ("export_10M", "open_and_jump", "open", "under_ms", 20.0),
    ("export_ratios", "flatten_against_vs_flatten", None, "paired_max", 1.25),
    ("export_big_state", "flatten_against", "flatten", "scale", None),
    ("export_big_state", "diff", "flatten", "ratio_max", 0.05),
    ("tracing_ratios", "flightrec_layer_vs_ring_layer", None, "paired_max", 1.5),
    ("tracing_event", "flightrec_layer", "ring_layer", "scale", None),
    ("tui_10M", "step_back", "static_screen", "under_ms", 16.0),
    ("tui_10M", "jump_first_last", "static_screen", "under_ms", 16.0),
    ("tui_10M", "who_changed", "static_screen", "under_ms", 16.0),
    ("tui_10M", "page_down", "static_screen", "under_ms", 16.0),
]


def median_ns(root: Path, group: str, bench: str):
    path = root / group / bench / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def show_ns(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def judge(kind, limit, ns, base_ns):
    """Returns (figure, met) for one target; `met` is None when nothing is judged."""
    if kind == "paired_max":
        return f"{ns:.2f}x paired (≤ {limit}x)", ns <= limit
    if kind == "paired_speed_min":
        return f"{1 / ns:.2f}x its speed, paired (≥ {limit}x)", 1 / ns >= limit
    if kind == "scale":
        return f"{ns / base_ns:.2f}x for scale", None
    if kind == "scale_speed":
        return f"{base_ns / ns:.2f}x its speed, for scale", None
    if kind == "ratio_max":
        ratio = ns / base_ns
        return f"{ratio:.2f}x (≤ {limit}x)", ratio <= limit
    if kind == "under_ms":
        return f"{ns / 1e6:.3g} ms (< {limit:g} ms)", ns / 1e6 < limit
    if kind == "gbps_min":
        size, least = limit
        gbps = size / ns
        return f"{gbps:.2f} GB/s (≥ {least} GB/s)", gbps >= least
    raise ValueError(kind)


def main() -> int:
    target_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("target")
    root = target_dir / "criterion"
    missed = 0
    print(f"{'benchmark':<44} {'median':>10} {'baseline':>10}  result")
    for group, bench, base, kind, limit in TARGETS:
        name = f"{group}/{bench}"
        ns = median_ns(root, group, bench)
        base_ns = 1.0 if base is None else median_ns(root, group, base)
        if ns is None or base_ns is None:
            print(f"{name:<44} {'(not run)':>10}")
            continue
        figure, met = judge(kind, limit, ns, base_ns)
        missed += met is False
        verdict = {True: "met", False: "MISSED", None: ""}[met]
        shown = f"{ns:.3f}" if base is None else show_ns(ns)
        base_shown = "(paired)" if base is None else show_ns(base_ns)
        print(f"{name:<44} {shown:>10} {base_shown:>10}  {figure} {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    # `bench-ratios.py | head` ends quietly, as other command-line tools do.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
