"""Float images in msgpack-rpc responses: packed as AirSim packs a std::vector<float> (msgpack
float 32 values), read back exactly by a standard msgpack reader, whatever bytes sit beside them."""

import msgpack
import numpy as np
import pytest

from worldstream.airsim_adapter.rpc import encode_response


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536, 36864])
def test_float_vectors_round_trip_as_float32_values(n):
    values = ((np.random.default_rng(n).random(n) - 0.5) * 1e5).astype(np.float32)
    values[:min(n, 2)] = [np.inf, np.nan][:min(n, 2)]
    blob = b"\xd8\x7f" * 40  # binary data that starts like the packer's stand-ins
    packed = encode_response(9, None, [{"image_data_float": values, "image_data_uint8": blob, "x": 0.1},
                                       {"image_data_float": values[:3]}])
    kind, msgid, error, result = msgpack.unpackb(packed, raw=False)
    assert (kind, msgid, error) == (1, 9, None)
    assert np.array_equal(np.array(result[0]["image_data_float"], np.float32), values, equal_nan=True)
    assert result[0]["image_data_uint8"] == blob and result[0]["x"] == 0.1  # other floats stay float 64
    assert np.array_equal(np.array(result[1]["image_data_float"], np.float32), values[:3], equal_nan=True)
    if n >= 16:
        assert len(packed) < 5 * n + 200  # 5 bytes a value (float 32), not 9


def test_values_that_msgpack_cannot_pack_get_a_clear_error():
    with pytest.raises(TypeError, match="cannot pack ndarray"):
        encode_response(1, None, np.zeros(3, np.float64))
