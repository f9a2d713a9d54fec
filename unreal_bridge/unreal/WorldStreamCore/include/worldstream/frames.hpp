// Coordinate frames (docs/frames.md, worldstream.core.frames), for the Unreal side:
//   world   ENU metres: x east, y north, z up (double)
//   glTF    y up, right-handed metres: (E, U, -N)
//   Unreal  left-handed z up, centimetres: X north, Y east, Z up (glTFRuntime's default basis)
//   AirSim  NED metres relative to PlayerStart: x north, y east, z down
// AirSim's convention: the PlayerStart is the origin of its NED frame and settings.json's
// OriginGeopoint is the geodetic position of that point; `worldstream airsim settings` puts both at
// the world ENU origin. FrameMapper places the world in Unreal from the PlayerStart's location, and
// rebases Unreal's world origin by whole steps for far flights.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace ws {

struct Vec3 {
    double x = 0, y = 0, z = 0;
    Vec3 operator+(const Vec3& o) const { return {x + o.x, y + o.y, z + o.z}; }
    Vec3 operator-(const Vec3& o) const { return {x - o.x, y - o.y, z - o.z}; }
    Vec3 operator*(double s) const { return {x * s, y * s, z * s}; }
    bool operator==(const Vec3& o) const { return x == o.x && y == o.y && z == o.z; }
};
Vec3 cross(const Vec3& a, const Vec3& b);
double dot(const Vec3& a, const Vec3& b);
Vec3 normalized(const Vec3& v);

struct Quat {  // [w, x, y, z]
    double w = 1, x = 0, y = 0, z = 0;
    Vec3 rotate(const Vec3& v) const;
};
// The rotation whose columns are the given orthonormal axes (body x, y, z expressed in the target frame).
Quat quat_from_axes(const Vec3& bx, const Vec3& by, const Vec3& bz);

// Point conversions (no offsets).
Vec3 enu_to_gltf(const Vec3& p);
Vec3 gltf_to_enu(const Vec3& p);
Vec3 gltf_to_unreal_cm(const Vec3& p);                             // glTFRuntime's default conversion
Vec3 enu_to_unreal_cm(const Vec3& p, const Vec3& unreal_origin_enu = {});  // world point at Unreal 0 given
Vec3 unreal_cm_to_enu(const Vec3& p, const Vec3& unreal_origin_enu = {});
Vec3 enu_to_airsim(const Vec3& p, const Vec3& player_start_enu = {});
Vec3 airsim_to_enu(const Vec3& p, const Vec3& player_start_enu = {});
// Directions (no scale, no offset).
Vec3 unreal_dir_to_enu(const Vec3& d);  // (X north, Y east, Z up) -> (E, N, U)
Vec3 enu_dir_to_unreal(const Vec3& d);

// A camera's pose for a protocol "enu" view from its Unreal forward and up axes: position in world
// ENU metres and the quaternion rotating body (x forward, y left, z up) into ENU.
struct EnuPose {
    Vec3 position;
    Quat orientation;
};
EnuPose enu_pose_from_unreal_axes(const Vec3& position_enu, const Vec3& forward_unreal, const Vec3& up_unreal);

// World ENU <-> the (possibly rebased) Unreal frame of one level.
class FrameMapper {
public:
    // The PlayerStart stands at `player_start_cm` (Unreal, original frame) and is world ENU point
    // `player_start_enu` (AirSim: the world origin, where OriginGeopoint is).
    explicit FrameMapper(const Vec3& player_start_cm = {}, const Vec3& player_start_enu = {})
        : start_cm_(player_start_cm), start_enu_(player_start_enu) {}

    Vec3 to_unreal(const Vec3& enu) const;  // cm in the current (rebased) frame
    Vec3 to_enu(const Vec3& unreal_cm) const;
    // AirSim NED (from the PlayerStart) of a world point, as the "airsim" protocol frame wants it.
    Vec3 to_airsim(const Vec3& enu) const { return enu_to_airsim(enu, start_enu_); }
    const Vec3& player_start_enu() const { return start_enu_; }

    // Unreal's world origin (UWorld::OriginLocation, cm of the original frame): actors appear shifted by -origin.
    const std::array<int64_t, 3>& world_origin_cm() const { return origin_cm_; }
    // When the camera (current frame, cm) is farther than threshold_m from Unreal's origin
    // horizontally, move the origin under it, snapped to step_m (a whole number of cm), and return the
    // new origin for UWorld::SetNewWorldOrigin; else nothing. Vertical is never rebased.
    std::optional<std::array<int64_t, 3>> rebase_if_far(const Vec3& camera_cm, double threshold_m, double step_m);
    void set_world_origin_cm(const std::array<int64_t, 3>& origin) { origin_cm_ = origin; }

private:
    Vec3 start_cm_, start_enu_;
    std::array<int64_t, 3> origin_cm_{0, 0, 0};
};

}  // namespace ws
