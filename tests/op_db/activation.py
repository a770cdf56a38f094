"""op_db entries of the activation ops (Relu ... LogSoftmax) and their backward ops (ReluGrad
... SoftsignGrad).

References compute in float64 with Python's math module, one element (or one row) at a time;
those of the backward ops spell out each derivative by hand. The first three samples of
every entry (the ones the gradient suite checks) keep their values at least 0.1 away from
the kinks (0, and 6 for Relu6); later samples cover the kinks themselves.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph.errors import InvalidArgumentError
from tests.op_db import FLOATS, REALS, ErrorCase, OpInfo, Sample, ShapeCase, rand

F32 = np.float32
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _elementwise(fn):
    """A reference applying the Python-float function ``fn`` to each element."""
    def ref(x, **attrs):
        x = np.asarray(x)
        out = np.empty(x.shape, np.float64 if x.dtype.kind == "f" else x.dtype)
        for idx in np.ndindex(x.shape):
            v = x[idx].item()
            out[idx] = fn(v, **attrs)
        return out
    return ref


def _softplus(v):
    if v > 30:
        return v + math.log1p(math.exp(-v))
    return math.log1p(math.exp(v))


def _leaky_relu(v, *, alpha=0.2):
    return v if v > 0 else v * float(np.float32(alpha))    # TF keeps alpha as a float32


def _rows(x):
    """(index, row) pairs over all but the last axis."""
    return [(idx, [x[idx + (j,)].item() for j in range(x.shape[-1])])
            for idx in np.ndindex(x.shape[:-1])]


def _softmax_ref(x):
    x = np.asarray(x)
    out = np.empty(x.shape, np.float64)
    for idx, row in _rows(x):
        top = max(row) if row else 0.0
        exps = [math.exp(v - top) for v in row]
        total = math.fsum(exps)
        for j, e in enumerate(exps):
            out[idx + (j,)] = e / total
    return out


def _log_softmax_ref(x):
    x = np.asarray(x)
    out = np.empty(x.shape, np.float64)
    for idx, row in _rows(x):
        top = max(row) if row else 0.0
        log_total = top + math.log(math.fsum(math.exp(v - top) for v in row)) if row else 0
        for j, v in enumerate(row):
            out[idx + (j,)] = v - log_total
    return out


def _rand_between(rng, shape, t, intervals):
    """Random values of t drawn uniformly from the union of the (low, high) intervals
    (integer types: from the whole span, kinks included)."""
    npd = np.dtype(t.as_numpy_dtype)
    if npd.kind != "f":
        return rand(rng, shape, t, intervals[0][0], intervals[-1][1])
    lengths = np.array([hi - lo for lo, hi in intervals])
    pick = rng.choice(len(intervals), size=shape, p=lengths / lengths.sum())
    lows = np.array([lo for lo, _ in intervals])[pick]
    return (lows + rng.uniform(0, 1, shape) * lengths[pick]).astype(npd)


#: [-3, 3] without (-0.1, 0.1): away from the kink at 0
_AWAY_FROM_0 = ((-3.0, -0.1), (0.1, 3.0))
#: [-3, 9] away from Relu6's kinks at 0 and 6
_AWAY_FROM_0_AND_6 = ((-3.0, -0.1), (0.1, 5.9), (6.1, 9.0))


def _unary_samples(intervals=_AWAY_FROM_0, extremes=True):
    def samples(rng, t):
        npd = t.as_numpy_dtype
        out = [Sample((_rand_between(rng, (2, 3), t, intervals),), name="matrix"),
               Sample((_rand_between(rng, (2, 1, 4), t, intervals),), name="rank3"),
               Sample((_rand_between(rng, (), t, intervals),), name="scalar"),
               Sample((np.zeros((0, 3), npd),), name="empty")]
        if extremes and np.dtype(npd).kind == "f":
            big = 60000.0 if npd == np.float16 else 1e30
            out.append(Sample((np.array([-big, -20.0, -1e-3, 0.0, 1e-3, 20.0, big], npd),),
                              name="extremes"))
        return out
    return samples


def _relu6_samples(rng, t):
    npd = t.as_numpy_dtype
    out = [Sample((_rand_between(rng, (3, 4), t, _AWAY_FROM_0_AND_6),), name="matrix"),
           Sample((_rand_between(rng, (), t, ((5.0, 5.9), (6.1, 9.0))),), name="scalar"),
           Sample((_rand_between(rng, (2, 1, 3), t, _AWAY_FROM_0_AND_6),), name="rank3"),
           Sample((np.zeros((2, 0), npd),), name="empty")]
    if np.dtype(npd).kind == "f":
        out.append(Sample((np.array([-1e-3, 0.0, 1e-3, 6 - 1e-2, 6.0, 6 + 1e-2], npd),),
                          name="kinks"))
    return out


def _leaky_relu_samples(rng, t):
    base = _unary_samples()(rng, t)
    x = _rand_between(rng, (2, 5), t, _AWAY_FROM_0)
    return [*base, Sample((x,), {"alpha": 0.5}, name="alpha_half"),
            Sample((x,), {"alpha": 2.0}, name="alpha_above_one"),
            Sample((x,), {"alpha": -0.3}, name="alpha_negative")]


def _softmax_samples(rng, t):
    npd = t.as_numpy_dtype
    big = 1000.0 if npd != np.float16 else 3e4     # logsoftmax stays in half's range
    return [Sample((rand(rng, (2, 5), t),), name="matrix"),
            Sample((rand(rng, (4,), t),), name="vector"),
            Sample((rand(rng, (2, 3, 4), t),), name="rank3"),
            Sample((np.array([[big, 0.0, -big], [big, big, 1.0]], npd),), name="large"),
            Sample((np.array([[-big, -big + 1, -big + 2]], npd),), name="all_very_negative"),
            Sample((np.zeros((0, 3), npd),), name="empty_batch"),
            Sample((np.zeros((2, 0), npd),), name="no_classes"),
            Sample((rand(rng, (3, 1), t),), name="one_class")]


_NOT_FLOAT = ErrorCase((np.zeros((2,), np.int32),), when="build", name="int32_refused",
                       regex=r"has DataType int32 not in list of allowed values")
_UNCHANGED_SHAPES = [ShapeCase("[?,3,?]", "[d0_0,3,d0_2]"), ShapeCase("?", "?"),
                     ShapeCase("[]", "[]")]
_SOFTMAX_ERRORS = [ErrorCase((np.float32(1.0),), name="scalar_logits",
                             regex=r"Shape must be at least rank 1 but is rank 0 for input "
                                   r"'logits'"),
                   _NOT_FLOAT]
_SOFTMAX_SHAPES = [ShapeCase("[?,5]", "[d0_0,5]"), ShapeCase("?", "?"), ShapeCase("[?]", "[?]"),
                   ShapeCase("[2,?,4]", "[2,?,4]"),
                   ShapeCase("[]", "must be at least rank 1", error=InvalidArgumentError)]


# ---------------------------------------------------------------------------- backward ops
def _elementwise_grad(fn):
    """A reference applying ``fn(gradient, second_input, **attrs)`` to each pair of
    elements."""
    def ref(g, v, **attrs):
        g, v = np.asarray(g), np.asarray(v)
        out = np.empty(g.shape, np.float64 if g.dtype.kind == "f" else g.dtype)
        for idx in np.ndindex(g.shape):
            out[idx] = fn(g[idx].item(), v[idx].item(), **attrs)
        return out
    return ref


def _relu_grad(g, x):
    return g * (1.0 if x > 0 else 0.0) if isinstance(g, float) else (g if x > 0 else 0)


def _relu6_grad(g, x):
    inside = 0 < x < 6
    return g * (1.0 if inside else 0.0) if isinstance(g, float) else (g if inside else 0)


def _leaky_relu_grad(g, x, *, alpha=0.2):
    return g if x > 0 else g * float(np.float32(alpha))


def _elu_grad(g, y):
    return g * (y + 1) if y < 0 else g


def _selu_grad(g, y):
    return g * (y + _SELU_SCALE * _SELU_ALPHA) if y < 0 else g * _SELU_SCALE


def _softplus_grad(g, x):
    # g * sigmoid(x), written without overflow for either sign of x
    if x >= 0:
        return g / (1 + math.exp(-x))
    e = math.exp(x)
    return g * e / (1 + e)


def _softsign_grad(g, x):
    return g / (1 + abs(x)) ** 2


def _grad_samples(second=lambda x: x, intervals=_AWAY_FROM_0, kinks=(0.0,), attrs=None):
    """Samples (gradients, second(x)) with x drawn away from the kinks, then the kinks
    themselves; ``second`` maps the forward input x to the op's second input."""
    def samples(rng, t):
        npd = t.as_numpy_dtype
        float_type = np.dtype(npd).kind == "f"

        def pair(shape):
            x = _rand_between(rng, shape, t, intervals)
            v = second(x.astype(np.float64)).astype(npd) if float_type else x
            return rand(rng, shape, t), v

        out = [Sample(pair((2, 3)), name="matrix"), Sample(pair((2, 1, 4)), name="rank3"),
               Sample(pair(()), name="scalar"),
               Sample((np.zeros((0, 3), npd), np.zeros((0, 3), npd)), name="empty")]
        if float_type:
            x = np.array([k + d for k in kinks for d in (-1e-3, 0.0, 1e-3)])
            out.append(Sample((rand(rng, x.shape, t), second(x).astype(npd)), name="kinks"))
            g = np.array([np.nan, np.inf, -np.inf, 1.0], npd)
            out.append(Sample((g, second(np.array([-1.0, -2.0, 2.0, np.nan])).astype(npd)),
                              name="non_finite"))
        for a in attrs or ():
            out.append(Sample(pair((2, 5)), {"alpha": a}, name=f"alpha_{a}"))
        return out
    return samples


def _elu_values(x):
    return np.where(x < 0, np.expm1(np.minimum(x, 0)), x)


def _selu_values(x):
    return _SELU_SCALE * np.where(x < 0, _SELU_ALPHA * np.expm1(np.minimum(x, 0)), x)


_GRAD_NOT_FLOAT = ErrorCase((np.zeros((2,), np.int32), np.zeros((2,), np.int32)), when="build",
                            name="int32_refused",
                            regex=r"has DataType int32 not in list of allowed values")


def _grad_errors(second):
    return [ErrorCase((np.zeros((2, 3), F32), np.zeros((3, 3), F32)), name="shapes_differ",
                      regex=rf"Dimension 0 in both shapes must be equal, but are 2 and 3 for "
                            rf"'gradients' and '{second}'"),
            ErrorCase((np.zeros((2, 3), F32), np.zeros(3, F32)), name="ranks_differ",
                      regex=r"Shapes must be equal rank, but are 2 and 1"),
            ErrorCase((np.zeros(3, F32), np.zeros(3, np.float64)), when="build",
                      name="mixed_dtypes", regex=r"Inconsistent values for attr 'T'")]


_GRAD_SHAPES = [ShapeCase("[?,3];[2,?]", "[2,3]"), ShapeCase("?;[?,4]", "[?,4]"),
                ShapeCase("?;?", "?"), ShapeCase("[];[]", "[]"),
                ShapeCase("[2,3];[2,4]", "Dimension 1 in both shapes must be equal",
                          error=InvalidArgumentError)]


def _grad_entry(op, fn, second="features", dtypes=FLOATS, samples=None, errors=None):
    return OpInfo(op, ref=_elementwise_grad(fn), dtypes=dtypes,
                  samples=samples or _grad_samples(),
                  errors=_grad_errors(second) + ([] if errors is None else errors),
                  shapes=_GRAD_SHAPES, grad_tol=1e-6)


def _entry(op, fn, dtypes=FLOATS, samples=None, errors=(_NOT_FLOAT,), **kw):
    return OpInfo(op, ref=_elementwise(fn), dtypes=dtypes,
                  samples=samples or _unary_samples(), errors=errors,
                  shapes=_UNCHANGED_SHAPES, grad_tol=1e-6, **kw)


ENTRIES = [
    _entry("Relu", lambda v: max(v, 0), dtypes=REALS + (dt.DT_INT8, dt.DT_UINT8), errors=()),
    _entry("Relu6", lambda v: min(max(v, 0), 6), dtypes=REALS + (dt.DT_UINT8,),
           samples=_relu6_samples, errors=()),
    _entry("LeakyRelu", _leaky_relu, samples=_leaky_relu_samples),
    _entry("Elu", lambda v: math.expm1(v) if v < 0 else v),
    _entry("Selu", lambda v: _SELU_SCALE * (_SELU_ALPHA * math.expm1(v) if v < 0 else v)),
    _entry("Softplus", _softplus),
    _entry("Softsign", lambda v: v / (abs(v) + 1)),
    OpInfo("Softmax", ref=_softmax_ref, samples=_softmax_samples, errors=_SOFTMAX_ERRORS,
           shapes=_SOFTMAX_SHAPES, grad_tol=1e-6),
    OpInfo("LogSoftmax", ref=_log_softmax_ref, samples=_softmax_samples,
           errors=_SOFTMAX_ERRORS, shapes=_SOFTMAX_SHAPES, grad_tol=1e-6),
    _grad_entry("ReluGrad", _relu_grad, dtypes=REALS + (dt.DT_INT8, dt.DT_UINT8)),
    _grad_entry("Relu6Grad", _relu6_grad, dtypes=REALS + (dt.DT_UINT8,),
                samples=_grad_samples(intervals=_AWAY_FROM_0_AND_6, kinks=(0.0, 6.0))),
    _grad_entry("LeakyReluGrad", _leaky_relu_grad,
                samples=_grad_samples(attrs=(0.5, 2.0, -0.3)), errors=[_GRAD_NOT_FLOAT]),
    _grad_entry("EluGrad", _elu_grad, "outputs", samples=_grad_samples(_elu_values),
                errors=[_GRAD_NOT_FLOAT]),
    _grad_entry("SeluGrad", _selu_grad, "outputs", samples=_grad_samples(_selu_values),
                errors=[_GRAD_NOT_FLOAT]),
    _grad_entry("SoftplusGrad", _softplus_grad, errors=[_GRAD_NOT_FLOAT]),
    _grad_entry("SoftsignGrad", _softsign_grad, errors=[_GRAD_NOT_FLOAT]),
]
