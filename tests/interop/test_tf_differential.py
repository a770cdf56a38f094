"""Exported GraphDefs run in real TensorFlow with our results (only where TF is installed).

For every op_db entry and dtype: the sample graph built from placeholders is written with
ToGraphDef's writer, imported by ``tf.compat.v1.import_graph_def``, run by a TF session, and
TF's outputs must equal ours. Ops whose outputs are random, stateful or differ by design are
listed in ``_SKIP`` with the reason. TensorFlow is not a test dependency: this module runs
only with it installed and OPGRAPH_TF_DIFFERENTIAL=1 set (a differential-testing tool: its
findings are reviewed by hand, since TF's CPU kernels lack some dtypes and layouts).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

if not os.environ.get("OPGRAPH_TF_DIFFERENTIAL"):
    pytest.skip("set OPGRAPH_TF_DIFFERENTIAL=1 (and install tensorflow-cpu) to compare with TF",
                allow_module_level=True)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")

from opgraph.graphdef import graph_to_graph_def  # noqa: E402
from tests.op_db import OP_DB  # noqa: E402
from tests.test_ops_generic import _as_tuple, _compare, _rng, build, run  # noqa: E402

_SKIP = {
    "RandomShuffle": "random", "RandomStandardNormal": "random", "RandomUniform": "random",
    "RandomUniformInt": "random", "TruncatedNormal": "random",
    "VariableV2": "stateful (ref variables)", "Assign": "ref inputs", "AssignAdd":
    "ref inputs", "AssignSub": "ref inputs", "IsVariableInitialized": "ref inputs",
    "ApplyGradientDescent": "ref inputs", "ApplyMomentum": "ref inputs", "ApplyAdam":
    "ref inputs", "ApplyAdagrad": "ref inputs", "ApplyRMSProp": "ref inputs",
    "Conv2DBackpropInputV2": "TF has no kernel for it",
}


def _params():
    for name, info in sorted(OP_DB.items()):
        if info.skip_generic or info.samples is None or name in _SKIP:
            continue
        for dtype in info.dtypes:
            if dtype.is_available:
                yield pytest.param(name, dtype, id=f"{name}-{dtype.name}")


@pytest.mark.parametrize(("op_type", "dtype"), list(_params()))
def test_tensorflow_runs_our_graph_def_with_our_results(op_type, dtype):
    info = OP_DB[op_type]
    tf1 = tf.compat.v1
    for k, sample in enumerate(info.samples(_rng(op_type, dtype.name), dtype)):
        root, wrapper, feeds = build(op_type, sample.inputs, sample.attrs, "known")
        outs, ours = run(root, wrapper, feeds)
        if not outs:
            continue
        data = graph_to_graph_def(root.graph()).SerializeToString()
        gd = tf1.GraphDef.FromString(data)
        graph = tf.Graph()
        with graph.as_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf1.import_graph_def(gd, name="")
        with tf1.Session(graph=graph) as sess:
            try:
                theirs = sess.run([o.name for o in outs],
                                  {f.name: v for f, v in feeds.items()})
            except tf.errors.NotFoundError as e:    # no TF kernel for this dtype
                pytest.skip(f"TF: {str(e).splitlines()[0][:120]}")
            except tf.errors.InvalidArgumentError as e:
                if "No OpKernel" in str(e):
                    pytest.skip(f"TF has no kernel: {str(e).splitlines()[0][:120]}")
                raise
        for j, (a, b) in enumerate(zip(_as_tuple(ours), theirs)):
            where = f"{op_type} sample {sample.name or k} ({dtype.name}) output {j}"
            _compare(a, np.asarray(b), dtype, where, sample.tol)


def test_tensorflow_imports_binary_and_text_with_colocation_and_shapes():
    from google.protobuf import text_format  # noqa: PLC0415  (ships with TensorFlow)

    from runtime import ClientSession  # noqa: PLC0415
    from tests.interop.test_import import _build_everything  # noqa: PLC0415

    root, x, n = _build_everything()
    gd = graph_to_graph_def(root.graph(), add_shapes=True)
    tf1 = tf.compat.v1
    for message in (tf1.GraphDef.FromString(gd.SerializeToString()),
                    text_format.Parse(gd.to_text(), tf1.GraphDef())):
        graph = tf.Graph()
        with graph.as_default():
            tf1.import_graph_def(message, name="")
        assert graph.get_operation_by_name("AddN").colocation_groups() == \
            [b"loc:@tower/Relu"]
        xv = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
        names = [n.output.name, "flat:0", "half:0", "splat:0", "i64:0", "Cast:0"]
        with tf1.Session(graph=graph) as sess:
            theirs = sess.run(names, {"x:0": xv})
        for a, b in zip(ClientSession(root).Run({x: xv}, names), theirs):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
