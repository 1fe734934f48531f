#include "AvatarBridgeCore/DriveSession.h"

#include <algorithm>
#include <cmath>

#include "DriveSessionImpl.h"

namespace avatar_bridge {
namespace {

float Finite(float v) { return std::isfinite(v) ? v : 0.f; }

MotionFrame Sanitised(const MotionFrame& in) {
    MotionFrame f = in;
    for (float& w : f.arkit) w = std::clamp(Finite(w), 0.f, 1.f);
    for (float& t : f.head_translation) t = Finite(t);
    for (float& g : f.eye_gaze) g = Finite(g);
    float norm = 0.f;
    for (float& q : f.head_rotation) {
        q = Finite(q);
        norm += q * q;
    }
    if (norm < 1e-12f) {
        f.head_rotation = {0.f, 0.f, 0.f, 1.f};
    } else {
        for (float& q : f.head_rotation) q /= std::sqrt(norm);
    }
    return f;
}

}  // namespace

// ---- DriveSession: forwards to Impl -------------------------------------------------------
DriveSession::DriveSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DriveSession::~DriveSession() = default;
Status DriveSession::PushMotion(const MotionFrame& frame) { return impl_->Push(frame); }
bool DriveSession::TakeLatestFrame(Frame& out) { return impl_->Take(out); }
bool DriveSession::LatestRenderedMotion(MotionFrame& out) const { return impl_->LatestMotion(out); }
void DriveSession::SetFrameCallback(FrameCallback cb) { impl_->SetCallback(std::move(cb)); }
Status DriveSession::WaitStarted(std::chrono::milliseconds t) { return impl_->WaitStarted(t); }
Status DriveSession::End(std::chrono::milliseconds t) { return impl_->End(t); }
DriveState DriveSession::State() const { return impl_->State(); }
Status DriveSession::LastError() const { return impl_->LastError(); }
DriveStats DriveSession::Stats() const { return impl_->Stats(); }

// ---- caller side ------------------------------------------------------------------------
DriveSession::Impl::Impl(sockets::Context context, std::string endpoint, std::string token,
                         DriveOptions options, SessionOptions session)
    : context_(std::move(context)), endpoint_(std::move(endpoint)), token_(std::move(token)),
      options_(std::move(options)), session_(session) {}

DriveSession::Impl::~Impl() { Stop(); }

void DriveSession::Impl::Start() {
    // A unique name: a closed socket's inproc name stays bound until libzmq reaps it.
    const std::string pipe = "inproc://avatar-drive-" + std::to_string(sockets::NextRequestId());
    wake_rx_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::pair);
    wake_rx_->bind(pipe);
    wake_tx_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::pair);
    wake_tx_->set(zmq::sockopt::linger, 0);
    wake_tx_->connect(pipe);
    Connect();
    thread_ = std::thread([this] { Run(); });
}

void DriveSession::Impl::Stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(wake_mutex_);
    wake_tx_.reset();
}

void DriveSession::Impl::Wake() {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    try {
        if (wake_tx_) wake_tx_->send(zmq::str_buffer("w"), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
        // The thread is already awake or gone.
    }
}

Status DriveSession::Impl::Push(const MotionFrame& frame) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (state_ == DriveState::Ended || state_ == DriveState::Failed || end_requested_) {
            return Status(ErrorCode::FailedPrecondition, "the drive session has ended");
        }
        outgoing_.push_back(Sanitised(frame));
        // Not streaming yet (or reconnecting): only the newest motion is worth sending.
        const size_t keep = state_ == DriveState::Streaming ? session_.max_queued_frames : 1;
        while (outgoing_.size() > std::max<size_t>(keep, 1)) outgoing_.pop_front();
    }
    Wake();
    return Status::Ok();
}

bool DriveSession::Impl::Take(Frame& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!has_latest_) return false;
    std::swap(out, latest_);
    has_latest_ = false;
    return true;
}

bool DriveSession::Impl::LatestMotion(MotionFrame& out) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!has_rendered_motion_) return false;
    out = rendered_motion_;
    return true;
}

void DriveSession::Impl::SetCallback(FrameCallback callback) {
    std::lock_guard<std::mutex> lock(mutex_);
    callback_ = std::move(callback);
}

Status DriveSession::Impl::WaitStarted(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    const bool done = changed_.wait_for(lock, timeout, [&] { return state_ != DriveState::Connecting; });
    if (!done) return Status(ErrorCode::DeadlineExceeded, "the runtime did not start the session in time");
    return state_ == DriveState::Failed ? error_ : Status::Ok();
}

Status DriveSession::Impl::End(std::chrono::milliseconds timeout) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        end_requested_ = true;
    }
    Wake();
    std::unique_lock<std::mutex> lock(mutex_);
    const bool done = changed_.wait_for(lock, timeout, [&] {
        return state_ == DriveState::Ended || state_ == DriveState::Failed;
    });
    if (!done) return Status(ErrorCode::DeadlineExceeded, "no final status from the runtime in time");
    return state_ == DriveState::Failed ? error_ : Status::Ok();
}

DriveState DriveSession::Impl::State() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_;
}

Status DriveSession::Impl::LastError() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
}

DriveStats DriveSession::Impl::Stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

void DriveSession::Impl::SetState(DriveState state, Status error) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        state_ = state;
        if (!error.ok()) error_ = std::move(error);
    }
    changed_.notify_all();
}

}  // namespace avatar_bridge
