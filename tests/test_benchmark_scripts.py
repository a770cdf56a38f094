"""The layer benchmark runs end to end on a small selection (one quick round: a smoke test of
the script, not a timing). Where torch is installed it checks every result against torch's
conv_transpose2d and conv2d_input, and the worst relative error it reports stays small."""

import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def test_conv_layers_benchmark_runs_and_agrees_with_torch():
    script = os.path.join(ROOT, "benchmarks", "conv_layers.py")
    out = subprocess.run(
        [sys.executable, script, "--only", "espcn 3x3s3 32>3 b1,depthwise 3x3s2 256 b1",
         "--rounds", "1", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines()
            if line.startswith(("espcn", "depthwise"))]
    assert len(rows) == 4, out.stdout  # two layers, NHWC and NCHW
    assert "SESSION MISMATCH" not in out.stdout
    worst = re.search(r"max rel error vs torch: ([0-9.e+-]+)", out.stdout)
    if "torch is not installed" in out.stdout:
        assert worst is None
    else:
        assert worst is not None and float(worst.group(1)) < 1e-5, out.stdout
