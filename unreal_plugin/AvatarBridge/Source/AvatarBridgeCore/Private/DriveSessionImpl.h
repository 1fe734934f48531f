// DriveSession internals: state shared with the caller (under `mutex`) and the IO thread's
// own state (socket, phase, timers), which only the thread touches.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "AvatarBridgeCore/DriveSession.h"
#include "Sockets.h"

namespace avatar_bridge {

struct DriveSession::Impl {
    Impl(sockets::Context context, std::string endpoint, std::string token, DriveOptions options,
         SessionOptions session);
    ~Impl();
    void Start();
    void Stop();

    // -- caller side (any thread) --
    Status Push(const MotionFrame& frame);
    bool Take(Frame& out);
    bool LatestMotion(MotionFrame& out) const;
    void SetCallback(FrameCallback callback);
    Status WaitStarted(std::chrono::milliseconds timeout);
    Status End(std::chrono::milliseconds timeout);
    DriveState State() const;
    Status LastError() const;
    DriveStats Stats() const;

private:
    enum class Phase { Open, AwaitStarted, Streaming, AwaitStatus, Closed };

    void Wake();
    void Run();
    void SendHeader();
    void FlushOutgoing();
    void ReceiveAll();
    void OnReply(wire::Reply& reply);
    void OnFrame(const msgpack::object* body);
    void OnError(const Status& error);
    void Heartbeat();
    void Reconnect();
    void Connect();
    void SetState(DriveState state, Status error = Status::Ok());

    const sockets::Context context_;
    const std::string endpoint_;
    const std::string token_;
    const DriveOptions options_;
    const SessionOptions session_;

    // Shared with callers.
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<MotionFrame> outgoing_;
    Frame latest_;
    bool has_latest_ = false;
    MotionFrame rendered_motion_;  // latest_'s motion, kept when latest_ is taken
    bool has_rendered_motion_ = false;
    FrameCallback callback_;
    DriveState state_ = DriveState::Connecting;
    Status error_;
    DriveStats stats_;
    bool end_requested_ = false;
    bool stop_ = false;
    std::mutex wake_mutex_;
    std::unique_ptr<zmq::socket_t> wake_tx_;

    // IO thread only.
    std::unique_ptr<zmq::socket_t> wake_rx_;
    std::unique_ptr<zmq::socket_t> socket_;
    std::unique_ptr<zmq::socket_t> monitor_;  // socket_'s connection events
    std::deque<MotionFrame> sent_;  // motion sent and not yet seen rendered, oldest first
    Phase phase_ = Phase::Open;
    int64_t request_id_ = 0;
    sockets::Clock::time_point last_rx_, last_ping_, retry_at_;
    std::thread thread_;
};

}  // namespace avatar_bridge
