#include "AvatarBridgeCore/Arkit.h"

#include <algorithm>
#include <cctype>

#include "AvatarBridgeCore/Coordinates.h"

namespace avatar_bridge {
namespace {

std::string Lower(const std::string& s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// Head and eye angle curves, lower case.
constexpr const char* kExtra[] = {"headyaw",     "headpitch",     "headroll",
                                  "lefteyeyaw",  "lefteyepitch",  "righteyeyaw",
                                  "righteyepitch"};

}  // namespace

const std::array<const char*, kNumArkit>& ArkitNames() {
    static const std::array<const char*, kNumArkit> names = {
        "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
        "eyeSquintLeft", "eyeWideLeft",
        "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight",
        "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
        "jawForward", "jawLeft", "jawRight", "jawOpen",
        "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
        "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
        "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
        "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
        "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
        "mouthUpperUpLeft", "mouthUpperUpRight",
        "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
        "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
        "noseSneerLeft", "noseSneerRight", "tongueOut",
    };
    return names;
}

int ArkitIndex(const std::string& name) {
    const std::string key = Lower(name);
    const auto& names = ArkitNames();
    for (int i = 0; i < kNumArkit; ++i) {
        if (Lower(names[i]) == key) return i;
    }
    return -1;
}

MotionFrame MotionFromCurves(const std::vector<std::pair<std::string, float>>& curves,
                             uint64_t sequence, double timecode) {
    MotionFrame frame;
    frame.sequence = sequence;
    frame.timecode = timecode;
    double angles[7] = {};
    bool seen[7] = {};
    for (const auto& [name, value] : curves) {
        const int index = ArkitIndex(name);
        if (index >= 0) {
            frame.arkit[index] = std::clamp(value, 0.f, 1.f);
            continue;
        }
        const std::string key = Lower(name);
        for (int i = 0; i < 7; ++i) {
            if (key == kExtra[i]) {
                angles[i] = value;
                seen[i] = true;
            }
        }
    }
    const Quat q = QuatFromYawPitchRoll(angles[0], angles[1], angles[2]);
    frame.head_rotation = {float(q[0]), float(q[1]), float(q[2]), float(q[3])};
    frame.has_eye_gaze = seen[3] && seen[4] && seen[5] && seen[6];
    if (frame.has_eye_gaze) {
        frame.eye_gaze = {float(angles[3]), float(angles[4]), float(angles[5]), float(angles[6])};
    }
    return frame;
}

std::vector<std::pair<std::string, float>> LiveLinkFaceCurves(const MotionFrame& frame) {
    std::vector<std::pair<std::string, float>> curves;
    curves.reserve(kNumArkit + 7);
    const auto& names = ArkitNames();
    for (int i = 0; i < kNumArkit; ++i) {
        std::string name = names[i];
        name[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[0])));
        curves.emplace_back(std::move(name), frame.arkit[i]);
    }
    const Quat q = {frame.head_rotation[0], frame.head_rotation[1], frame.head_rotation[2],
                    frame.head_rotation[3]};
    const Vec3 angles = YawPitchRollFromQuat(q);
    curves.emplace_back("HeadYaw", float(angles[0]));
    curves.emplace_back("HeadPitch", float(angles[1]));
    curves.emplace_back("HeadRoll", float(angles[2]));
    if (frame.has_eye_gaze) {
        curves.emplace_back("LeftEyeYaw", frame.eye_gaze[0]);
        curves.emplace_back("LeftEyePitch", frame.eye_gaze[1]);
        curves.emplace_back("RightEyeYaw", frame.eye_gaze[2]);
        curves.emplace_back("RightEyePitch", frame.eye_gaze[3]);
    }
    return curves;
}

}  // namespace avatar_bridge
