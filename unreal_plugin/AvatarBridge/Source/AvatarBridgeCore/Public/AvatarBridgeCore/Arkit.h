// The 52 ARKit curve names (Live Link Face / EARFaceBlendShape order) and the mapping from
// named curves, as a Live Link subject carries them, to a MotionFrame.
#pragma once

#include "AvatarBridgeCore/Export.h"

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "AvatarBridgeCore/Types.h"

namespace avatar_bridge {

// lowerCamelCase ARKit names, index = MotionFrame::arkit index ("Left" = the subject's left).
AB_CORE_API const std::array<const char*, kNumArkit>& ArkitNames();

// Index of an ARKit name, matched case-insensitively ("JawOpen" and "jawOpen" both work,
// as Live Link Face subjects capitalise them); -1 if it is not one of the 52.
AB_CORE_API int ArkitIndex(const std::string& name);

// Named curves (e.g. a Live Link subject's property names and values) -> MotionFrame:
// - the 52 ARKit curves, clamped to [0, 1] (absent curves stay 0);
// - HeadYaw / HeadPitch / HeadRoll (radians, see QuatFromYawPitchRoll) -> head_rotation;
// - LeftEyeYaw / LeftEyePitch / RightEyeYaw / RightEyePitch -> eye_gaze (when all four are
//   present). Other names are ignored. Matching is case-insensitive.
AB_CORE_API MotionFrame MotionFromCurves(const std::vector<std::pair<std::string, float>>& curves,
                             uint64_t sequence, double timecode);

// MotionFrame -> named curves as the Live Link Face app names them: the 52 ARKit curves with
// a capital first letter ("EyeBlinkLeft" ... "TongueOut"), HeadYaw / HeadPitch / HeadRoll
// (radians, YawPitchRollFromQuat of head_rotation) and, when the frame has a gaze,
// LeftEyeYaw / LeftEyePitch / RightEyeYaw / RightEyePitch. MotionFromCurves reads them back.
AB_CORE_API std::vector<std::pair<std::string, float>> LiveLinkFaceCurves(const MotionFrame& frame);

}  // namespace avatar_bridge
