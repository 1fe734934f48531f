#include "AvatarBridgeCore/Coordinates.h"

#include <algorithm>
#include <cmath>

namespace avatar_bridge {
namespace {

constexpr double kCmPerM = 100.0;

Quat Multiply(const Quat& a, const Quat& b) {  // Hamilton product, (x, y, z, w)
    return {a[3] * b[0] + a[0] * b[3] + a[1] * b[2] - a[2] * b[1],
            a[3] * b[1] - a[0] * b[2] + a[1] * b[3] + a[2] * b[0],
            a[3] * b[2] + a[0] * b[1] - a[1] * b[0] + a[2] * b[3],
            a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2]};
}

Vec3 Rotate(const Quat& q, const Vec3& v) {
    const Quat p{v[0], v[1], v[2], 0.0};
    const Quat conj{-q[0], -q[1], -q[2], q[3]};
    const Quat r = Multiply(Multiply(q, p), conj);
    return {r[0], r[1], r[2]};
}

Quat Normalized(const Quat& q) {
    const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (n < 1e-12) return {0.0, 0.0, 0.0, 1.0};
    return {q[0] / n, q[1] / n, q[2] / n, q[3] / n};
}

}  // namespace

Transform ConvertTransform(const Transform& in, Direction direction) {
    const Vec3& p = in.position;
    const Quat q = Normalized(in.rotation);
    Transform out;
    if (direction == Direction::RuntimeToUnreal) {
        out.position = {kCmPerM * p[2], -kCmPerM * p[0], kCmPerM * p[1]};
        out.rotation = {-q[2], q[0], -q[1], q[3]};
    } else {
        out.position = {-p[1] / kCmPerM, p[2] / kCmPerM, p[0] / kCmPerM};
        out.rotation = {q[1], -q[2], -q[0], q[3]};
    }
    return out;
}

Vec3 ToRuntimePosition(const Vec3& unreal_cm) {
    return ConvertTransform({unreal_cm, {0, 0, 0, 1}}, Direction::UnrealToRuntime).position;
}
Vec3 ToUnrealPosition(const Vec3& runtime_m) {
    return ConvertTransform({runtime_m, {0, 0, 0, 1}}, Direction::RuntimeToUnreal).position;
}
Quat ToRuntimeRotation(const Quat& unreal_q) {
    return ConvertTransform({{0, 0, 0}, unreal_q}, Direction::UnrealToRuntime).rotation;
}
Quat ToUnrealRotation(const Quat& runtime_q) {
    return ConvertTransform({{0, 0, 0}, runtime_q}, Direction::RuntimeToUnreal).rotation;
}

std::array<double, 16> CameraToWorldFromUnreal(const Transform& unreal_camera) {
    const Transform rt = ConvertTransform(unreal_camera, Direction::UnrealToRuntime);
    // The camera's local axes are rotated like any vector, so rotate them in runtime space
    // (the local axes themselves converted: Unreal forward +X -> runtime +Z, etc.).
    const Vec3 forward = Rotate(rt.rotation, ToRuntimePosition({kCmPerM, 0, 0}));
    const Vec3 right = Rotate(rt.rotation, ToRuntimePosition({0, kCmPerM, 0}));
    const Vec3 up = Rotate(rt.rotation, ToRuntimePosition({0, 0, kCmPerM}));
    const Vec3& t = rt.position;
    // Columns: +X right, +Y up, +Z back (OpenGL looks down -Z), translation.
    return {right[0], up[0], -forward[0], t[0],
            right[1], up[1], -forward[1], t[1],
            right[2], up[2], -forward[2], t[2],
            0.0,      0.0,   0.0,         1.0};
}

Quat QuatFromYawPitchRoll(double yaw, double pitch, double roll) {
    const Quat qy{0.0, std::sin(yaw / 2), 0.0, std::cos(yaw / 2)};
    const Quat qx{std::sin(pitch / 2), 0.0, 0.0, std::cos(pitch / 2)};
    const Quat qz{0.0, 0.0, std::sin(roll / 2), std::cos(roll / 2)};
    return Multiply(Multiply(qy, qx), qz);
}

Vec3 YawPitchRollFromQuat(const Quat& q) {
    const double x = q[0], y = q[1], z = q[2], w = q[3];
    // R = Ry(yaw) Rx(pitch) Rz(roll): R12 = -sin(pitch), (R02, R22) ~ yaw, (R10, R11) ~ roll.
    const double r12 = 2 * (y * z - x * w);
    const double pitch = std::asin(std::clamp(-r12, -1.0, 1.0));
    const double yaw = std::atan2(2 * (x * z + y * w), 1 - 2 * (x * x + y * y));
    const double roll = std::atan2(2 * (x * y + z * w), 1 - 2 * (x * x + z * z));
    return {yaw, pitch, roll};
}

Quat EyeRotationFromGaze(double yaw, double pitch) {
    return QuatFromYawPitchRoll(yaw, -pitch, 0.0);
}

}  // namespace avatar_bridge
