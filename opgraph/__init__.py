"""opgraph: TensorFlow's C++ graph-building API in Python.

The framework half: dtypes, partial shapes, errors, op definitions and their registry,
Scope / Operation / Output and build-time shape inference. The op library is the ``ops``
package; execution is ``runtime``.
"""

from opgraph import errors
from opgraph.dtypes import (
    DT_BFLOAT16, DT_BOOL, DT_COMPLEX64, DT_COMPLEX128, DT_DOUBLE, DT_FLOAT, DT_HALF,
    DT_INT8, DT_INT16, DT_INT32, DT_INT64, DT_STRING, DT_UINT8, DT_UINT16, DType, as_dtype,
)
from opgraph.errors import Status
from opgraph.gradients import AddSymbolicGradients, gradient, not_differentiable
from opgraph.graph import Graph, Operation, Output
from opgraph.graphdef import GraphDef, read_graph_def
from opgraph.importer import ImportGraphDef
from opgraph.inputs import Input, InputList
from opgraph.op_def import OpDef
from opgraph.registry import get_op_def, register_op, registered_ops
from opgraph.scope import Scope
from opgraph.shapes import TensorShape, as_shape
from opgraph import onnx_export as onnx  # opgraph.onnx.export(...); needs the onnx extra

__version__ = "0.1.0"

__all__ = [
    "DT_BFLOAT16", "DT_BOOL", "DT_COMPLEX64", "DT_COMPLEX128", "DT_DOUBLE", "DT_FLOAT",
    "DT_HALF", "DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_STRING", "DT_UINT8",
    "DT_UINT16", "AddSymbolicGradients", "DType", "Graph", "GraphDef", "ImportGraphDef",
    "Input", "InputList", "OpDef", "Operation", "Output", "Scope", "Status", "TensorShape",
    "as_dtype", "as_shape", "errors", "get_op_def", "gradient", "not_differentiable", "onnx",
    "read_graph_def", "register_op", "registered_ops",
]
