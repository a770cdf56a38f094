"""TensorShape: unknown rank, unknown dims, merge, compatibility, printing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opgraph import TensorShape, as_shape, errors
from opgraph.shapes import unknown_shape

UNKNOWN = TensorShape(None)


def test_unknown_rank():
    assert UNKNOWN.rank is None and UNKNOWN.ndims is None and UNKNOWN.dims is None
    assert not UNKNOWN.is_fully_defined()
    assert UNKNOWN.num_elements() is None
    with pytest.raises(errors.InvalidArgumentError, match="unknown TensorShape"):
        UNKNOWN.as_list()
    with pytest.raises(ValueError, match="unknown rank"):
        len(UNKNOWN)
    assert UNKNOWN[0] is None
    assert UNKNOWN[1:].rank is None


def test_unknown_dims():
    s = TensorShape([None, 8, 8, 16])
    assert s.rank == 4
    assert s.as_list() == [None, 8, 8, 16]
    assert not s.is_fully_defined()
    assert s.num_elements() is None
    assert s[0] is None and s[3] == 16
    assert s[1:3] == TensorShape([8, 8])
    assert list(s) == [None, 8, 8, 16]
    assert TensorShape([None, -1]).as_list() == [None, None]   # -1 is TF's unknown


def test_fully_defined_and_scalar():
    s = TensorShape([2, 3, 0])
    assert s.is_fully_defined() and s.num_elements() == 0
    scalar = TensorShape([])
    assert scalar.rank == 0 and scalar.is_fully_defined() and scalar.num_elements() == 1
    assert TensorShape([2**40, 2**40]).num_elements() == 2**80    # no overflow
    assert TensorShape(np.array([2, 3])).as_list() == [2, 3]
    assert TensorShape((np.int64(4),)).as_list() == [4]


def test_repr_and_str():
    assert repr(TensorShape([None, 8, 8, 16])) == "TensorShape([?, 8, 8, 16])"
    assert str(TensorShape([None, 8, 8, 16])) == "[?, 8, 8, 16]"
    assert str(TensorShape([])) == "[]"
    assert str(UNKNOWN) == "<unknown>"
    assert repr(UNKNOWN) == "TensorShape(None)"
    assert TensorShape([1, None, 5]).compact() == "[1,?,5]"
    assert UNKNOWN.compact() == "?"


def test_equality():
    assert TensorShape([1, 2]) == TensorShape([1, 2])
    assert TensorShape([1, 2]) == [1, 2]
    assert TensorShape([1, 2]) != TensorShape([2, 1])
    assert TensorShape([1, 2]) != TensorShape([1, 2, 1])
    assert TensorShape([None, 2]) == TensorShape([None, 2])
    assert TensorShape([None, 2]) != TensorShape([1, 2])
    assert UNKNOWN == TensorShape(None)
    assert UNKNOWN != TensorShape([])
    assert TensorShape([1]) != "not a shape"
    assert hash(TensorShape([None, 3])) == hash(TensorShape([None, 3]))
    assert len({TensorShape([1, 2]), TensorShape((1, 2)), TensorShape([2, 1])}) == 2


@pytest.mark.parametrize(("a", "b", "ok"), [
    ([1, 2], [1, 2], True), ([1, None], [1, 5], True), ([None, None], [3, 4], True),
    ([1, 2], [1, 3], False), ([1, 2], [1, 2, 3], False), (None, [1, 2, 3], True),
    ([], None, True), ([], [], True), ([], [1], False),
])
def test_is_compatible_with(a, b, ok):
    assert TensorShape(a).is_compatible_with(b) is ok
    assert TensorShape(b).is_compatible_with(TensorShape(a)) is ok


def test_merge_with():
    assert TensorShape([None, 8]).merge_with([4, None]) == TensorShape([4, 8])
    assert UNKNOWN.merge_with([2, None]).as_list() == [2, None]
    assert TensorShape([2, None]).merge_with(UNKNOWN).as_list() == [2, None]
    assert UNKNOWN.merge_with(UNKNOWN).rank is None
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"Dimension 1 in both shapes must be equal, but are 8 and 9"):
        TensorShape([None, 8]).merge_with([1, 9])
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"Shapes must be equal rank, but are 2 and 3"):
        TensorShape([1, 2]).merge_with([1, 2, 3])


def test_with_rank():
    assert UNKNOWN.with_rank(3).as_list() == [None, None, None]
    assert TensorShape([1, 2]).with_rank(2) == TensorShape([1, 2])
    with pytest.raises(errors.InvalidArgumentError, match="Shape must be rank 4 but is rank 2"):
        TensorShape([1, 2]).with_rank(4)


@pytest.mark.parametrize("bad", [[-2], [1.5], ["a"], [[1]], [1, -3]])
def test_invalid_dims(bad):
    with pytest.raises(errors.InvalidArgumentError, match="Shape dimensions must be"):
        TensorShape(bad)


def test_as_shape_and_unknown_shape():
    s = TensorShape([1])
    assert as_shape(s) is s
    assert as_shape([None, 2]).as_list() == [None, 2]
    assert as_shape(None).rank is None
    assert unknown_shape().rank is None
    assert unknown_shape(3).as_list() == [None, None, None]
    assert TensorShape(TensorShape([4, None])).as_list() == [4, None]


dims = st.lists(st.one_of(st.none(), st.integers(0, 5)), max_size=4)
shapes = st.one_of(st.none(), dims)


@given(shapes, shapes)
def test_merge_is_compatible_and_symmetric(a, b):
    sa, sb = TensorShape(a), TensorShape(b)
    if sa.is_compatible_with(sb):
        m = sa.merge_with(sb)
        assert m == sb.merge_with(sa)
        assert m.is_compatible_with(sa) and m.is_compatible_with(sb)
        if sa.rank is not None:
            assert m.rank == sa.rank
    else:
        with pytest.raises(errors.InvalidArgumentError):
            sa.merge_with(sb)
