"""Random ops with TF's ``seed`` / ``seed2`` attrs.

A node with seed or seed2 non-zero draws the same sequence in every new session (the n-th
Run of a fresh session gives the same numbers); with both zero each session draws from
fresh entropy. Successive Runs of one session give new numbers, as in TF.
"""

from __future__ import annotations

from opgraph import errors
from opgraph.wrappers import declare

__all__ = ["RandomUniform", "RandomStandardNormal", "TruncatedNormal", "RandomUniformInt",
           "RandomShuffle"]

_SEEDS = ["seed: int = 0  # with seed2: a fixed, reproducible sequence when either is set",
          "seed2: int = 0"]


def _shape_from_input(c):
    s = c.with_rank_at_most(0, 1)
    if s.rank == 0:
        msg = "shape must be a 1-D vector of dims, but is a scalar"
        raise errors.InvalidArgumentError(msg)
    shape = c.input_as_shape(0)
    if shape.dims is not None and any(d is not None and d < 0 for d in shape.dims):
        msg = f"shape dims must be non-negative, got {shape}"
        raise errors.InvalidArgumentError(msg)
    return shape


def _random_shape(c):
    value = c.input_tensor(0)
    if value is not None and (value < 0).any():
        msg = f"shape dims must be non-negative, got {value.tolist()}"
        raise errors.InvalidArgumentError(msg)
    return [_shape_from_input(c)]


def _uniform_int_shape(c):
    for i, name in ((1, "minval"), (2, "maxval")):
        s = c.input(i)
        if s.rank not in (None, 0):
            msg = f"{name} must be a scalar, but has shape {s}"
            raise errors.InvalidArgumentError(msg)
    lo, hi = c.scalar_value(1), c.scalar_value(2)
    if lo is not None and hi is not None and not lo < hi:
        msg = f"Need minval < maxval: {lo} >= {hi}"
        raise errors.InvalidArgumentError(msg)
    return _random_shape(c)


def _float_random(name: str, doc: str):
    return declare(
        name,
        inputs=["shape: T  # 1-D: the output's dims"], outputs=["output: dtype"],
        attrs=[*_SEEDS, "dtype: {half, bfloat16, float, double}", "T: {int32, int64}"],
        shape_fn=_random_shape, stateful=True, doc=doc)


RandomUniform = _float_random("RandomUniform", "Uniform random values in [0, 1).")
RandomStandardNormal = _float_random(
    "RandomStandardNormal", "Normal random values with mean 0 and standard deviation 1.")
TruncatedNormal = _float_random(
    "TruncatedNormal", "Normal values with mean 0 and standard deviation 1, redrawn when more "
    "than 2 standard deviations from the mean.")

RandomUniformInt = declare(
    "RandomUniformInt",
    inputs=["shape: T", "minval: Tout  # scalar, inclusive", "maxval: Tout  # scalar, exclusive"],
    outputs=["output: Tout"],
    attrs=[*_SEEDS, "Tout: {int32, int64}", "T: {int32, int64}"],
    shape_fn=_uniform_int_shape, stateful=True,
    doc="Uniform random integers in [minval, maxval).")

RandomShuffle = declare(
    "RandomShuffle",
    inputs=["value: T"], outputs=["output: T"],
    attrs=[*_SEEDS, "T: type"],
    shape_fn=lambda c: [c.input(0)], stateful=True,
    doc="value with its first dimension randomly permuted.")
