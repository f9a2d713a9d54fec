import numpy as np
from hypothesis import given, strategies as st

from worldstream.core import GeoOrigin
from worldstream.core import frames as F

coord = st.floats(-1e7, 1e7, allow_nan=False)
points = st.tuples(coord, coord, st.floats(-1e4, 1e5))


@given(points, points)
def test_local_frames_round_trip(p, start):
    p = np.array(p)
    assert np.allclose(F.gltf_to_enu(F.enu_to_gltf(p)), p)
    assert np.allclose(F.airsim_to_enu(F.enu_to_airsim(p, start), start), p, atol=1e-6)
    assert np.allclose(F.unreal_to_enu(F.enu_to_unreal(p, start), start), p, atol=1e-6)


@given(points)
def test_gltfruntime_import_lands_where_enu_to_unreal_says(p):
    # glTFRuntime's default basis applied to our glTF content == our direct ENU -> Unreal map
    assert np.allclose(F.gltf_to_unreal(F.enu_to_gltf(p)), F.enu_to_unreal(p))
    # AirSim NED is Unreal's X, Y and -Z in metres (both relative to PlayerStart)
    ue = F.enu_to_unreal(p) / 100.0
    ned = F.enu_to_airsim(p)
    assert np.allclose(ned, [ue[0], ue[1], -ue[2]])


def test_known_point_through_every_frame():
    # a point 100 m east, 200 m north, 30 m up of the origin
    p = np.array([100.0, 200.0, 30.0])
    assert F.enu_to_gltf(p).tolist() == [100.0, 30.0, -200.0]
    assert F.gltf_to_tiles(F.enu_to_gltf(p)).tolist() == [100.0, 200.0, 30.0]  # tiles frame is ENU again
    assert F.enu_to_airsim(p, (0.0, 0.0, 10.0)).tolist() == [200.0, 100.0, -20.0]
    assert F.enu_to_unreal(p).tolist() == [20000.0, 10000.0, 3000.0]
    origin = GeoOrigin(lat=0.0, lon=0.0, alt=0.0)
    lat, lon, alt = F.enu_to_geodetic(p, origin)
    assert abs(lat - 200.0 / 110574.0) < 1e-6 and abs(lon - 100.0 / 111320.0) < 1e-6 and abs(alt - 30.0) < 0.01


@given(st.floats(-89.9, 89.9), st.floats(-180, 180), st.floats(-500, 20000))
def test_geodetic_ecef_round_trip(lat, lon, alt):
    lat2, lon2, alt2 = F.ecef_to_geodetic(F.geodetic_to_ecef(lat, lon, alt))
    assert abs(lat2 - lat) < 1e-9 and abs(alt2 - alt) < 1e-3
    assert abs(((lon2 - lon + 180) % 360) - 180) < 1e-9


@given(st.floats(-80, 80), st.floats(-179, 179), points)
def test_enu_geodetic_round_trip(lat, lon, p):
    origin = GeoOrigin(lat=lat, lon=lon, alt=0.0)
    p = np.array(p) / 1000.0  # within 10 km
    back = F.geodetic_to_enu(*F.enu_to_geodetic(p, origin), origin)
    assert np.allclose(back, p, atol=1e-4)


def test_ecef_matrix_is_a_rotation_plus_origin():
    m = F.enu_to_ecef_matrix(47.0, 8.0, 400.0)
    r = m[:3, :3]
    assert np.allclose(r.T @ r, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    assert np.allclose(m[:3, 3], F.geodetic_to_ecef(47.0, 8.0, 400.0))
    assert np.allclose(F.geodetic_to_ecef(0.0, 0.0, 0.0), [F.WGS84_A, 0.0, 0.0])
