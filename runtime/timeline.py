"""Timelines: a traced Run's step stats as a Chrome trace (chrome://tracing, Perfetto).

    >>> metadata = RunMetadata()
    >>> sess.Run(RunOptions(RunOptions.FULL_TRACE), feeds, fetches, [], metadata)
    >>> write_chrome_trace(metadata, "timeline.json")       # open in ui.perfetto.dev

As TF's ``timeline.Timeline(step_stats).generate_chrome_trace_format()``: one process per
device (named by a metadata event), one thread per executor thread, a complete ("X") event
per node with its op type, and in ``args`` the op, its inputs' names and its output
shapes and dtypes. Times are microseconds from the first node's start.
"""

from __future__ import annotations

import json
import os

from runtime.executor import StepStats

__all__ = ["Timeline", "write_chrome_trace"]


class Timeline:
    """TF's python Timeline over a StepStats (or a RunMetadata)."""

    def __init__(self, step_stats, graph=None):
        if hasattr(step_stats, "step_stats"):       # a RunMetadata
            step_stats = step_stats.step_stats
        if not isinstance(step_stats, StepStats):
            msg = f"Timeline needs StepStats or a RunMetadata, got {type(step_stats).__name__}"
            raise TypeError(msg)
        self._stats = step_stats
        self._graph = graph

    def trace_events(self) -> list[dict]:
        raw = self._stats.to_chrome_trace()["traceEvents"]
        pids: dict[str, int] = {}
        tids: dict[tuple, int] = {}
        events: list[dict] = []
        t0 = min((e["ts"] for e in raw), default=0)
        for e in raw:
            device = str(e["pid"])
            if device not in pids:
                pids[device] = len(pids)
                events.append({"name": "process_name", "ph": "M", "pid": pids[device],
                               "args": {"name": f"{device} Compute"}})
                events.append({"name": "process_sort_index", "ph": "M", "pid": pids[device],
                               "args": {"sort_index": pids[device]}})
            key = (device, e["tid"])
            if key not in tids:
                tids[key] = len([k for k in tids if k[0] == device])
                events.append({"name": "thread_name", "ph": "M", "pid": pids[device],
                               "tid": tids[key], "args": {"name": f"thread {tids[key]}"}})
            args = dict(e["args"])
            args["name"] = e["name"]
            if self._graph is not None:
                try:
                    op = self._graph.get_operation(e["name"])
                    args["inputs"] = [o.name for o in op.inputs]
                except Exception:  # noqa: BLE001  (a node of another graph: no inputs)
                    pass
            for k, shape in enumerate(args.get("output_shapes", ())):
                dtype = args.get("output_dtypes", ())[k] if k < len(
                    args.get("output_dtypes", ())) else "?"
                args[f"output{k}"] = f"{dtype} {shape}"
            events.append({"name": e["cat"], "cat": "Op", "ph": "X", "pid": pids[device],
                           "tid": tids[key], "ts": round(e["ts"] - t0, 3),
                           "dur": round(max(e["dur"], 0.001), 3), "args": args})
        return events

    def generate_chrome_trace_format(self, show_dataflow: bool = False,  # noqa: ARG002
                                     show_memory: bool = False) -> str:  # noqa: ARG002
        """The trace as JSON text (TF's method name; dataflow/memory views not drawn)."""
        return json.dumps({"traceEvents": self.trace_events(), "displayTimeUnit": "ms"},
                          indent=None, separators=(",", ":"))


def write_chrome_trace(run_metadata, path, graph=None) -> str:
    """Write the Chrome trace of ``run_metadata`` (or StepStats) to ``path``; returns path."""
    text = Timeline(run_metadata, graph).generate_chrome_trace_format()
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
