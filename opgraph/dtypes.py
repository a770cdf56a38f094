"""Data types: TF's DType enum and its mapping to numpy.

    >>> from opgraph import DT_FLOAT, as_dtype
    >>> as_dtype("float") is DT_FLOAT
    True

bfloat16 maps to ``ml_dtypes.bfloat16`` when that package is importable; without it the
DType still exists (so ops can declare it) but asking for its numpy type raises
UnimplementedError.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors

__all__ = [
    "DType", "as_dtype", "DT_HALF", "DT_BFLOAT16", "DT_FLOAT", "DT_DOUBLE", "DT_INT8",
    "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16", "DT_BOOL", "DT_COMPLEX64",
    "DT_COMPLEX128", "DT_STRING",
]


def _bfloat16_numpy():
    try:
        import ml_dtypes  # noqa: PLC0415  (optional dependency)
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


class DType:
    """A tensor element type. Instances are singletons; compare with ``is`` or ``==``."""

    __slots__ = ("name", "enum", "_numpy", "_aliases")

    def __init__(self, name: str, enum: int, numpy_dtype, aliases=()):
        self.name = name            # numpy-style name: "float32"
        self.enum = enum            # TF's DataType enum value
        self._numpy = numpy_dtype   # np.dtype, None (unavailable) or a zero-arg loader
        self._aliases = aliases

    @property
    def tf_name(self) -> str:
        """TF's enum spelling, e.g. ``DT_FLOAT``."""
        return _TF_NAMES[self]

    @property
    def as_numpy_dtype(self) -> np.dtype:
        """The numpy dtype; UnimplementedError when no numpy type exists for it here."""
        if callable(self._numpy):
            self._numpy = self._numpy()
        if self._numpy is None:
            hint = " (install 'ml_dtypes' for bfloat16)" if self.name == "bfloat16" else ""
            msg = f"DType {self.name} has no numpy equivalent on this installation{hint}"
            raise errors.UnimplementedError(msg)
        return self._numpy

    @property
    def is_available(self) -> bool:
        try:
            self.as_numpy_dtype
        except errors.UnimplementedError:
            return False
        return True

    @property
    def is_floating(self) -> bool:
        return self.name in ("float16", "bfloat16", "float32", "float64")

    @property
    def is_integer(self) -> bool:
        return self.name.startswith(("int", "uint"))

    def __repr__(self) -> str:
        return f"tf.{self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        return (as_dtype, (self.name,))


DT_HALF = DType("float16", 19, np.dtype(np.float16), ("half",))
DT_BFLOAT16 = DType("bfloat16", 14, _bfloat16_numpy)
DT_FLOAT = DType("float32", 1, np.dtype(np.float32), ("float",))
DT_DOUBLE = DType("float64", 2, np.dtype(np.float64), ("double",))
DT_INT8 = DType("int8", 6, np.dtype(np.int8))
DT_INT16 = DType("int16", 5, np.dtype(np.int16))
DT_INT32 = DType("int32", 3, np.dtype(np.int32))
DT_INT64 = DType("int64", 9, np.dtype(np.int64))
DT_UINT8 = DType("uint8", 4, np.dtype(np.uint8))
DT_UINT16 = DType("uint16", 17, np.dtype(np.uint16))
DT_BOOL = DType("bool", 10, np.dtype(np.bool_))
DT_COMPLEX64 = DType("complex64", 8, np.dtype(np.complex64))
DT_COMPLEX128 = DType("complex128", 18, np.dtype(np.complex128))
DT_STRING = DType("string", 7, np.dtype(object))

ALL_TYPES = (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE, DT_INT8, DT_INT16, DT_INT32, DT_INT64,
             DT_UINT8, DT_UINT16, DT_BOOL, DT_COMPLEX64, DT_COMPLEX128, DT_STRING)
_TF_NAMES = {
    DT_HALF: "DT_HALF", DT_BFLOAT16: "DT_BFLOAT16", DT_FLOAT: "DT_FLOAT", DT_DOUBLE: "DT_DOUBLE",
    DT_INT8: "DT_INT8", DT_INT16: "DT_INT16", DT_INT32: "DT_INT32", DT_INT64: "DT_INT64",
    DT_UINT8: "DT_UINT8", DT_UINT16: "DT_UINT16", DT_BOOL: "DT_BOOL",
    DT_COMPLEX64: "DT_COMPLEX64", DT_COMPLEX128: "DT_COMPLEX128", DT_STRING: "DT_STRING",
}
_BY_NAME: dict[str, DType] = {}
for _t in ALL_TYPES:
    for _n in (_t.name, _t.tf_name, _t.tf_name.lower(), _t.tf_name[3:].lower(), *_t._aliases):
        _BY_NAME[_n] = _t
_BY_NUMPY = {_t.as_numpy_dtype: _t for _t in ALL_TYPES if _t is not DT_BFLOAT16}

# TF's type shorthands used in op definitions.
TYPE_SETS = {
    "numbertype": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE, DT_INT8, DT_INT16, DT_INT32,
                   DT_INT64, DT_UINT8, DT_UINT16, DT_COMPLEX64, DT_COMPLEX128),
    "realnumbertype": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE, DT_INT8, DT_INT16, DT_INT32,
                       DT_INT64, DT_UINT8, DT_UINT16),
    "floatingpoint": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE),
}


_PYTHON_TYPES = {float: DT_FLOAT, int: DT_INT32, bool: DT_BOOL, complex: DT_COMPLEX128,
                 str: DT_STRING, bytes: DT_STRING}


def as_dtype(value) -> DType:
    """Convert a DType, numpy dtype/type or name ("float32", "float", "DT_FLOAT") to a DType.

    Raises:
      TypeError: when there is no DType for ``value`` (as TF's ``tf.as_dtype`` does).
    """
    if isinstance(value, DType):
        return value
    if value is None:             # np.dtype(None) would silently give float64
        msg = "Cannot convert None to a DType"
        raise TypeError(msg)
    if isinstance(value, type) and value in _PYTHON_TYPES:   # TF's Python rules, not numpy's
        return _PYTHON_TYPES[value]
    if isinstance(value, str):
        found = _BY_NAME.get(value)
        if found is not None:
            return found
        raise TypeError(f"Cannot convert {value!r} to a DType; known names: "
                        f"{', '.join(t.name for t in ALL_TYPES)}")
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        np_dtype = None
    if np_dtype is not None:
        found = _BY_NUMPY.get(np_dtype)
        if found is not None:
            return found
        if np_dtype.name == "bfloat16":
            return DT_BFLOAT16
        if np_dtype.kind in "US":
            return DT_STRING
    raise TypeError(f"Cannot convert {value!r} to a DType")
