// Coordinate frames (see frames.hpp).
#include "worldstream/frames.hpp"

#include <cmath>
#include <stdexcept>

namespace ws {

Vec3 cross(const Vec3& a, const Vec3& b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
double dot(const Vec3& a, const Vec3& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
Vec3 normalized(const Vec3& v) {
    double n = std::sqrt(dot(v, v));
    if (!(n > 0) || !std::isfinite(n)) throw std::invalid_argument("cannot normalise a zero or non-finite vector");
    return v * (1.0 / n);
}

Vec3 Quat::rotate(const Vec3& v) const {
    Vec3 u{x, y, z};
    return u * (2.0 * dot(u, v)) + v * (w * w - dot(u, u)) + cross(u, v) * (2.0 * w);
}

Quat quat_from_axes(const Vec3& bx, const Vec3& by, const Vec3& bz) {
    // matrix m with columns bx, by, bz; Shepperd's method
    double m00 = bx.x, m10 = bx.y, m20 = bx.z, m01 = by.x, m11 = by.y, m21 = by.z, m02 = bz.x, m12 = bz.y, m22 = bz.z;
    double tr = m00 + m11 + m22;
    Quat q;
    if (tr > 0) {
        double s = std::sqrt(tr + 1.0) * 2;
        q = {0.25 * s, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s};
    } else if (m00 > m11 && m00 > m22) {
        double s = std::sqrt(1.0 + m00 - m11 - m22) * 2;
        q = {(m21 - m12) / s, 0.25 * s, (m01 + m10) / s, (m02 + m20) / s};
    } else if (m11 > m22) {
        double s = std::sqrt(1.0 + m11 - m00 - m22) * 2;
        q = {(m02 - m20) / s, (m01 + m10) / s, 0.25 * s, (m12 + m21) / s};
    } else {
        double s = std::sqrt(1.0 + m22 - m00 - m11) * 2;
        q = {(m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, 0.25 * s};
    }
    if (q.w < 0) q = {-q.w, -q.x, -q.y, -q.z};
    return q;
}

Vec3 enu_to_gltf(const Vec3& p) { return {p.x, p.z, -p.y}; }
Vec3 gltf_to_enu(const Vec3& p) { return {p.x, -p.z, p.y}; }
Vec3 gltf_to_unreal_cm(const Vec3& p) { return Vec3{-p.z, p.x, p.y} * 100.0; }
Vec3 enu_to_unreal_cm(const Vec3& p, const Vec3& o) {
    Vec3 d = p - o;
    return Vec3{d.y, d.x, d.z} * 100.0;
}
Vec3 unreal_cm_to_enu(const Vec3& p, const Vec3& o) { return Vec3{p.y / 100.0, p.x / 100.0, p.z / 100.0} + o; }
Vec3 enu_to_airsim(const Vec3& p, const Vec3& s) {
    Vec3 d = p - s;
    return {d.y, d.x, -d.z};
}
Vec3 airsim_to_enu(const Vec3& p, const Vec3& s) { return Vec3{p.y, p.x, -p.z} + s; }
Vec3 unreal_dir_to_enu(const Vec3& d) { return {d.y, d.x, d.z}; }
Vec3 enu_dir_to_unreal(const Vec3& d) { return {d.y, d.x, d.z}; }

EnuPose enu_pose_from_unreal_axes(const Vec3& position_enu, const Vec3& forward_unreal, const Vec3& up_unreal) {
    Vec3 f = normalized(unreal_dir_to_enu(forward_unreal));
    Vec3 u = unreal_dir_to_enu(up_unreal);
    u = normalized(u - f * dot(u, f));  // re-orthogonalise
    Vec3 left = cross(u, f);            // right-handed ENU: left = up x forward
    return {position_enu, quat_from_axes(f, left, u)};
}

Vec3 FrameMapper::to_unreal(const Vec3& enu) const {
    Vec3 d = enu - start_enu_;
    Vec3 o{static_cast<double>(origin_cm_[0]), static_cast<double>(origin_cm_[1]), static_cast<double>(origin_cm_[2])};
    return start_cm_ + Vec3{d.y, d.x, d.z} * 100.0 - o;
}

Vec3 FrameMapper::to_enu(const Vec3& cm) const {
    Vec3 o{static_cast<double>(origin_cm_[0]), static_cast<double>(origin_cm_[1]), static_cast<double>(origin_cm_[2])};
    Vec3 d = cm + o - start_cm_;
    return start_enu_ + Vec3{d.y / 100.0, d.x / 100.0, d.z / 100.0};
}

std::optional<std::array<int64_t, 3>> FrameMapper::rebase_if_far(const Vec3& camera_cm, double threshold_m, double step_m) {
    if (!(step_m >= 0.01) || !(threshold_m > 0)) throw std::invalid_argument("rebase step and threshold must be positive");
    if (std::hypot(camera_cm.x, camera_cm.y) <= threshold_m * 100.0) return std::nullopt;
    auto step_cm = static_cast<int64_t>(std::llround(step_m * 100.0));
    auto snap = [&](double v) { return static_cast<int64_t>(std::llround(v / static_cast<double>(step_cm))) * step_cm; };
    origin_cm_ = {origin_cm_[0] + snap(camera_cm.x), origin_cm_[1] + snap(camera_cm.y), origin_cm_[2]};
    return origin_cm_;
}

}  // namespace ws
