// One drive session: motion frames out, rendered RGBA frames in, on a background thread.
//
// - PushMotion() is non-blocking and thread-safe; frames go out in order (a short queue; when
//   the runtime is unreachable only the newest is kept).
// - Received frames are latest-wins: TakeLatestFrame() hands over the newest frame not yet
//   taken (older ones are skipped), e.g. once per game tick. An optional callback sees every
//   frame on the background thread. Every frame carries the motion it was rendered from
//   (matched by sequence; the runtime echoes the sequence, not the motion).
// - The session survives a runtime restart: when the runtime stops answering (heartbeats) or
//   reports the session lost, the thread reconnects and re-opens the session (same options).
// - Errors are values: LastError() and State() say what happened; nothing throws.
#pragma once

#include "AvatarBridgeCore/Export.h"

#include <chrono>
#include <functional>
#include <memory>

#include "AvatarBridgeCore/Status.h"
#include "AvatarBridgeCore/Types.h"

namespace avatar_bridge {

struct SessionOptions {
    std::chrono::milliseconds heartbeat{500};        // ping when the runtime has been quiet this long
    std::chrono::milliseconds server_timeout{2000};  // no reply this long: reconnect
    std::chrono::milliseconds retry_delay{200};      // pause before re-opening a lost session
    size_t max_queued_frames = 8;                    // outgoing; the oldest is dropped beyond
};

class AB_CORE_API DriveSession {
public:
    using FrameCallback = std::function<void(const Frame&)>;
    struct Impl;

    explicit DriveSession(std::unique_ptr<Impl> impl);  // made by RuntimeClient::StartDrive
    ~DriveSession();  // ends the session (best effort) and joins the thread
    DriveSession(const DriveSession&) = delete;
    DriveSession& operator=(const DriveSession&) = delete;

    // Queue one motion frame (sanitised: weights clamped to [0, 1], NaNs zeroed, the
    // quaternion normalised). FailedPrecondition once the session has ended or failed.
    Status PushMotion(const MotionFrame& frame);
    // The newest received frame not yet taken: true and `out` filled (swapped in), else false.
    bool TakeLatestFrame(Frame& out);
    // The motion of the newest received frame (Frame::motion), without taking the frame:
    // what the runtime rendered last, e.g. to publish it as a Live Link subject. False until
    // a frame rendered from pushed motion arrived.
    bool LatestRenderedMotion(MotionFrame& out) const;
    // Called on the background thread for every received frame; set before pushing.
    void SetFrameCallback(FrameCallback callback);

    // Blocks until the runtime confirmed the session (DriveStarted), it failed, or timeout.
    Status WaitStarted(std::chrono::milliseconds timeout);
    // Sends `end`, waits for the runtime's final status (frames still pending are rendered).
    Status End(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

    DriveState State() const;
    Status LastError() const;  // OK, or the error that failed the session
    DriveStats Stats() const;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace avatar_bridge
