"""The `opgraph` command, end to end in a subprocess (python -m opgraph)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def opgraph(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "opgraph", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
                          check=False)


def inproc(capsys, *args) -> tuple[int, str, str]:
    """The command run in this process (quicker than a subprocess)."""
    from opgraph.cli import main  # noqa: PLC0415

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def g(name: str) -> str:
    return os.path.join(GOLDEN, name)


def test_check_reports_the_error_tf_does_not_catch():
    r = opgraph("check", g("bad_v2.pbtxt"))
    assert r.returncode == 1, r.stderr
    assert "node 'dx' (Conv2DBackpropInputV2)" in r.stdout
    assert "Size of out_backprop doesn't match computed: actual = 5, computed = 4" in r.stdout
    assert "bad_v2.pbtxt:92" in r.stdout and "1 error(s)" in r.stdout


def test_check_ok(capsys):
    rc, out, _ = inproc(capsys, "check", g("small_cnn.pb"))
    assert rc == 0 and "OK, 27 node(s)" in out


def test_check_a_python_file(tmp_path, capsys):
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent("""
        import ops
        from opgraph import Scope, DT_FLOAT
        root = Scope.NewRootScope()
        x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[1, 8, 8, 3])
        ops.Conv2D(root.WithOpName("bad"), x, ops.Const(root, [[[[1.0]]]]), [1, 1, 1, 1],
                   "SAME")
        ops.MatMul(root.WithOpName("mm"), [[1.0, 2.0]], [[1.0, 2.0]])
        if __name__ == "__main__":
            raise SystemExit("must not run")
    """))
    rc, out, _ = inproc(capsys, "check", script)
    assert rc == 1
    assert "node 'bad' (Conv2D)" in out and "node 'mm' (MatMul)" in out
    assert "2 error(s)" in out and "build.py:6" in out


def test_info_table(capsys):
    rc, out, _ = inproc(capsys, "info", g("conv_decoder.pb"))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["node", "op", "output", "dtype", "shape", "memory"]
    row = next(line for line in lines if line.startswith("deconv2 "))
    assert "Conv2DBackpropInput" in row and "[1,19,19,3]" in row and "4.2 KiB" in row
    assert "484 parameters" in out


def test_run_prints_and_saves(tmp_path, capsys):
    data = np.load(g("conv_decoder.npz"))
    np.save(tmp_path / "z.npy", data["in/z__0"])
    out = tmp_path / "out.npz"
    trace = tmp_path / "trace.json"
    r = opgraph("run", g("conv_decoder.pb"), "--feed", f"z={tmp_path / 'z.npy'}",
                "--fetch", "image:0", "--fetch", "relu1", "-o", out, "--timeline", trace)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    np.testing.assert_allclose(got["image__0"], data["out/image__0"], atol=1e-5)
    assert got["relu1"].shape == (1, 8, 8, 4)
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["name"] for e in events if e["ph"] == "X"} >= {"Conv2DBackpropInput", "Sigmoid"}
    rc, out, _ = inproc(capsys, "run", g("conv_decoder.pb"), "--feed",
                        f"z={tmp_path / 'z.npy'}", "--fetch", "relu1:0")
    assert rc == 0 and out.startswith("relu1:0: float32[1, 8, 8, 4]")


def test_run_errors_exit_1(tmp_path, capsys):
    rc, _, err = inproc(capsys, "run", g("conv_decoder.pb"), "--fetch", "image:0")
    assert rc == 1 and "You must feed a value for placeholder tensor 'z'" in err
    rc, _, err = inproc(capsys, "run", g("conv_decoder.pb"), "--feed", "z=missing.npy",
                        "--fetch", "image:0")
    assert rc == 1 and "Cannot read feed 'z'" in err
    rc, _, err = inproc(capsys, "check", tmp_path / "nope.pb")
    assert rc == 1 and "No such file" in err
    (tmp_path / "trunc.pb").write_bytes(open(g("small_cnn.pb"), "rb").read()[:100])
    r = opgraph("check", tmp_path / "trunc.pb")
    assert r.returncode == 1 and "DATA_LOSS" in r.stderr and "truncated" in r.stderr


def test_draw_and_convert(tmp_path, capsys):
    rc, _, _ = inproc(capsys, "draw", g("bad_v2.pbtxt"), "-o", tmp_path / "g.dot")
    assert rc == 1                         # drawn, but the graph has an error
    text = (tmp_path / "g.dot").read_text()
    assert "digraph" in text and "#ffe0e0" in text and "out_backprop" in text
    r = opgraph("convert", g("small_cnn.pb"), "-o", tmp_path / "m.pbtxt")
    assert r.returncode == 0, r.stderr
    assert inproc(capsys, "check", tmp_path / "m.pbtxt")[0] == 0
    assert inproc(capsys, "convert", tmp_path / "m.pbtxt", "-o", tmp_path / "m.pb")[0] == 0
    assert inproc(capsys, "check", tmp_path / "m.pb")[0] == 0
    rc, _, err = inproc(capsys, "convert", g("small_cnn.pb"), "-o", tmp_path / "m.xyz")
    assert rc == 1 and "Cannot tell the format" in err


@pytest.mark.parametrize("command", ["check", "info", "run", "draw", "convert"])
def test_every_command_has_help(command, capsys):
    from opgraph.cli import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and f"usage: opgraph {command}" in capsys.readouterr().out


def test_python_dash_m_help_and_usage_errors():
    r = opgraph("--help")
    assert r.returncode == 0 and "check" in r.stdout and "convert" in r.stdout
    assert opgraph().returncode == 2       # no command: a usage error
