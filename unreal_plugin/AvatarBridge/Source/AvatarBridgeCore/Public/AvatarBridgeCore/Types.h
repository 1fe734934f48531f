// Plain value types of the runtime protocol (protos/avatar/v1/avatar_runtime.proto),
// in runtime conventions: metres, +Y up, right-handed, the head faces +Z.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace avatar_bridge {

constexpr int kNumArkit = 52;

// One frame of face motion (proto MotionFrame).
struct MotionFrame {
    std::array<float, kNumArkit> arkit{};                 // Live Link Face order, [0, 1]
    std::array<float, 4> head_rotation{0.f, 0.f, 0.f, 1.f};  // quaternion (x, y, z, w)
    std::array<float, 3> head_translation{0.f, 0.f, 0.f};    // metres
    bool has_eye_gaze = false;
    std::array<float, 4> eye_gaze{};  // left yaw, left pitch, right yaw, right pitch (radians)
    uint64_t sequence = 0;            // echoed in the Frame rendered from it
    double timecode = 0.0;            // seconds, echoed too
};

// MediaPipe's 478 face-mesh landmarks in pixels of a width x height image (proto Landmarks),
// for callers that run the face tracker themselves.
struct FaceLandmarks {
    std::vector<float> xyz;  // 478 * 3, row-major (x, y, z); z in x's pixel scale
    uint32_t width = 0;
    uint32_t height = 0;
};

// One rendered frame (proto Frame, ENCODING_RAW): RGBA8, straight alpha, row 0 = top.
struct Frame {
    uint64_t sequence = 0;
    double timecode = 0.0;
    uint32_t width = 0;
    uint32_t height = 0;
    std::vector<uint8_t> rgba;  // width * height * 4 bytes
    float render_ms = 0.f;      // server-side deform + render
    float encode_ms = 0.f;
    std::chrono::steady_clock::time_point received_at{};
    // The motion this frame was rendered from: the frame the session pushed with the
    // `sequence` the runtime echoed (as sent: sanitised, before the runtime's optional
    // smoothing). has_motion is false if no pushed frame had that sequence.
    bool has_motion = false;
    MotionFrame motion;
};

struct AvatarInfo {
    std::string id;
    std::string name;
    std::string reconstructor;
    double created_at = 0.0;
    std::string meta_json;
};

// What a drive session renders (proto DriveHeader; raw RGBA is always requested).
struct DriveOptions {
    std::string avatar_id;
    uint32_t width = 512;
    uint32_t height = 512;
    float fov_y_deg = 0.f;  // 0 = the runtime's default (12 degrees)
    // Camera-to-world, row-major, OpenGL axes (looks down -Z); empty = default portrait camera.
    std::vector<double> c2w;
    bool smoothing = false;  // One-Euro smoothing on the runtime, default parameters
};

enum class DriveState {
    Connecting,  // header sent (or waiting for the runtime), no DriveStarted yet
    Streaming,   // DriveStarted received: frames flow
    Ended,       // End() completed: the runtime sent its final status
    Failed,      // a non-recoverable error (see DriveSession::LastError)
};

struct DriveStats {
    uint64_t frames_sent = 0;      // motion frames handed to the socket
    uint64_t frames_received = 0;  // rendered frames received
    uint64_t reconnects = 0;       // sessions re-opened after losing the runtime
    // From the runtime's final DriveStatus (after End()).
    uint64_t server_received = 0;
    uint64_t server_rendered = 0;
    uint64_t server_dropped = 0;
};

}  // namespace avatar_bridge
