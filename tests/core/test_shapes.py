"""core.shapes.broadcast_shape against torch's rules."""

import pytest
import torch

from worldstream.core.shapes import broadcast_shape


@pytest.mark.parametrize("a, b", [((1, 3), (4, 1)), ((), (2,)), ((5, 1, 3), (4, 1)), ((3,), (3,)), ((0, 1), (1, 7))])
def test_broadcast_shape_follows_torch(a, b):
    assert broadcast_shape(a, b) == tuple(torch.broadcast_shapes(a, b))


def test_shapes_that_do_not_broadcast_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 3\)"):
        broadcast_shape((2, 3), (4, 3))
