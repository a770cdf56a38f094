"""The op library (tensorflow::ops): one declaration per op, wrappers generated from it.

    >>> import ops
    >>> dx = ops.Conv2DBackpropInputV2(root, x, w, dy, [1, 2, 2, 1], "SAME",
    ...                                ops.Conv2DBackpropInputV2.Dilations([1, 1, 1, 1]))
"""

from ops.array_ops import Const, Identity, Placeholder, PlaceholderWithDefault, Shape
from ops.math_ops import AddV2
from ops.nn_ops import Conv2D, Conv2DBackpropInput, Conv2DBackpropInputV2

__all__ = ["AddV2", "Const", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropInputV2",
           "Identity", "Placeholder", "PlaceholderWithDefault", "Shape"]
