// Unreal <-> runtime coordinates, in one place.
//
// Unreal:  centimetres, Z up, left-handed, X forward, Y right.
// Runtime: metres, Y up, right-handed, the head faces +Z, +X is the subject's left
//          (glTF's convention; DESIGN.md section 5).
//
// An avatar placed in Unreal faces the actor's +X. Axis by axis:
//
//     runtime +Z (face direction)  <->  Unreal +X (forward)
//     runtime +Y (up)              <->  Unreal +Z (up)
//     runtime +X (subject's left)  <->  Unreal -Y (left)
//
//     unreal  = 100 * (z, -x, y)      runtime = (-y, z, x) / 100
//
// The axis map has determinant -1 (handedness flips), so a rotation quaternion (x, y, z, w)
// maps its vector part like a pseudo-vector: unreal q = (-z, x, -y, w) of runtime q, and back
// runtime q = (y, -z, -x, w). Both quaternions rotate vectors with the usual Hamilton product
// (what FQuat does), so a rotation of the head by q in the runtime is the rotation FQuat(q')
// of the same head in Unreal. Example: runtime yaw +a (face turns to the subject's left) is
// Unreal yaw -a (FRotator yaw is positive toward +Y, the right).
#pragma once

#include "AvatarBridgeCore/Export.h"

#include <array>

namespace avatar_bridge {

using Vec3 = std::array<double, 3>;
using Quat = std::array<double, 4>;  // (x, y, z, w)

enum class Direction { UnrealToRuntime, RuntimeToUnreal };

// The one conversion function: positions (scaled cm <-> m) and rotations.
struct Transform {
    Vec3 position{0.0, 0.0, 0.0};
    Quat rotation{0.0, 0.0, 0.0, 1.0};
};
AB_CORE_API Transform ConvertTransform(const Transform& in, Direction direction);

// Conveniences built on ConvertTransform.
AB_CORE_API Vec3 ToRuntimePosition(const Vec3& unreal_cm);
AB_CORE_API Vec3 ToUnrealPosition(const Vec3& runtime_m);
AB_CORE_API Quat ToRuntimeRotation(const Quat& unreal_q);
AB_CORE_API Quat ToUnrealRotation(const Quat& runtime_q);

// Camera-to-world (row-major 4x4, OpenGL axes: looks down -Z, +Y up, +X right) for an Unreal
// camera at `unreal_camera` (its local +X looks forward, +Y right, +Z up), both expressed in
// the avatar's space (e.g. the camera's transform relative to the avatar's component).
AB_CORE_API std::array<double, 16> CameraToWorldFromUnreal(const Transform& unreal_camera);

// Head (yaw, pitch, roll) radians -> quaternion (x, y, z, w), runtime convention
// (avatar_runtime/motion/pose.py): R = Ry(yaw) Rx(pitch) Rz(roll); yaw positive turns the face
// toward the subject's left, pitch positive looks down, roll positive tips the head toward
// the subject's right shoulder. This is what Live Link Face's HeadYaw/HeadPitch/HeadRoll carry.
AB_CORE_API Quat QuatFromYawPitchRoll(double yaw, double pitch, double roll);
// The inverse: (yaw, pitch, roll) radians of a unit quaternion, pitch in [-pi/2, pi/2].
AB_CORE_API Vec3 YawPitchRollFromQuat(const Quat& q);

// An eye's rotation for a gaze (yaw, pitch) radians, runtime convention (the eye's +Z axis
// turned by yaw toward +X, then by pitch toward +Y: Ry(yaw) Rx(-pitch), as the runtime's head
// model turns the eyeballs).
AB_CORE_API Quat EyeRotationFromGaze(double yaw, double pitch);

}  // namespace avatar_bridge
