// Client of avatar-runtime's ZeroMQ protocol (engine_bridge/zmq_server.py).
//
//     auto client = RuntimeClient::Connect({"tcp://127.0.0.1:5555", token});
//     if (!client.ok()) log(client.status().ToString());
//     auto avatar = client.value()->CreateAvatar(png_bytes, "me");
//     auto session = client.value()->StartDrive({avatar->id, 512, 512});
//
// Thread-safe: calls serialise on one socket; each drive session has its own socket and
// background thread. Calls that lose the runtime time out (Unavailable / DeadlineExceeded)
// and reset the socket, so the next call reaches a restarted runtime.
#pragma once

#include "AvatarBridgeCore/Export.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "AvatarBridgeCore/DriveSession.h"
#include "AvatarBridgeCore/Mesh.h"
#include "AvatarBridgeCore/Status.h"
#include "AvatarBridgeCore/Types.h"

namespace avatar_bridge {

struct ClientOptions {
    std::string endpoint = "tcp://127.0.0.1:5555";
    std::string token;  // empty = none (the runtime requires one off loopback)
    std::chrono::milliseconds call_timeout{5000};
    std::chrono::milliseconds create_timeout{120000};  // CreateAvatar runs reconstruction
    std::chrono::milliseconds solve_timeout{30000};    // SolveMotion, CalibrateNeutral (wait for calibration)
    std::chrono::milliseconds export_timeout{120000};  // ExportMesh, all files
};

class AB_CORE_API RuntimeClient {
public:
    // Connects and checks the runtime answers and accepts the token (one ListAvatars call):
    // Unavailable if nothing answers within call_timeout, Unauthenticated on a bad token.
    static Result<std::unique_ptr<RuntimeClient>> Connect(const ClientOptions& options);
    ~RuntimeClient();
    RuntimeClient(const RuntimeClient&) = delete;
    RuntimeClient& operator=(const RuntimeClient&) = delete;

    // One authenticated round trip (ListAvatars): OK while the runtime is reachable.
    Status Ping();
    // Photo bytes (PNG / JPEG) -> avatar (same photo -> same id).
    Result<AvatarInfo> CreateAvatar(const std::vector<uint8_t>& image, const std::string& name = "");
    Result<AvatarInfo> GetAvatar(const std::string& avatar_id);
    // A face photo -> the motion the runtime solves from it (52 ARKit weights, head pose,
    // eye gaze); with `avatar_id`, read through that avatar's identity. FailedPrecondition
    // when there is no face. Push the result to a DriveSession to render it.
    Result<MotionFrame> SolveMotion(const std::vector<uint8_t>& image, const std::string& avatar_id = "",
                                    uint64_t sequence = 0, double timecode = 0.0);
    // The driving face at rest (a photo, or its landmarks) becomes the avatar's neutral, as
    // Live Link Face's "calibrate": from then on every solve for this avatar (SolveMotion,
    // image / landmark drive frames) reads motion relative to that face, so a performer's
    // high brows or wide eyes at rest read 0. Kept with the avatar. Returns the neutral frame
    // as it now solves (about all zero). FailedPrecondition when the photo has no face.
    Result<MotionFrame> CalibrateNeutral(const std::string& avatar_id, const std::vector<uint8_t>& image);
    Result<MotionFrame> CalibrateNeutral(const std::string& avatar_id, const FaceLandmarks& landmarks);
    // Forgets a calibration: back to the neutral estimated from the avatar's source photo.
    Status ResetNeutral(const std::string& avatar_id);
    // The avatar's mesh files (glb: one; obj: .obj, .mtl, .png; ply: one), every chunk
    // checked by offset and total_bytes and every file by its sha256 (DataLoss otherwise).
    Result<std::vector<MeshFile>> ExportMesh(const std::string& avatar_id, const ExportOptions& options = {});
    // Opens a drive session (returns at once; see DriveSession::WaitStarted).
    Result<std::unique_ptr<DriveSession>> StartDrive(const DriveOptions& options,
                                                     const SessionOptions& session = {});

    const ClientOptions& options() const;

private:
    struct Impl;
    explicit RuntimeClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace avatar_bridge
