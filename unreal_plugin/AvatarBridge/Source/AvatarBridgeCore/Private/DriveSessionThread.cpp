// The drive session's background thread: one DEALER socket, a poll loop, heartbeats and
// reconnection. Only this thread touches socket_, phase_ and the timers.
#include <vector>

#include "DriveSessionImpl.h"

namespace avatar_bridge {
namespace {

using Clock = sockets::Clock;
constexpr std::chrono::milliseconds kPollInterval{50};
constexpr size_t kMaxUnmatched = 256;  // sent motion kept for matching rendered frames

bool Recoverable(ErrorCode code, bool streaming) {
    // The runtime restarted or is shutting down, or it closed an idle session; while
    // streaming, INVALID_ARGUMENT means it no longer knows the session (it restarted).
    return code == ErrorCode::Unavailable || code == ErrorCode::DeadlineExceeded ||
           (streaming && code == ErrorCode::InvalidArgument);
}

}  // namespace

void DriveSession::Impl::Run() {
    last_rx_ = last_ping_ = retry_at_ = Clock::now();
    try {
        while (phase_ != Phase::Closed) {
            bool stop, end;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                stop = stop_;
                end = end_requested_;
            }
            if (stop) break;
            if (phase_ == Phase::Open && end) {  // nothing open on the runtime: done
                phase_ = Phase::Closed;
                SetState(DriveState::Ended);
                break;
            }
            if (phase_ == Phase::Open && Clock::now() >= retry_at_) SendHeader();
            if (phase_ == Phase::Streaming) FlushOutgoing();

            std::vector<zmq::pollitem_t> items = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                                  {wake_rx_->handle(), 0, ZMQ_POLLIN, 0},
                                                  {monitor_->handle(), 0, ZMQ_POLLIN, 0}};
            zmq::poll(items, kPollInterval);
            if (items[1].revents & ZMQ_POLLIN) {
                zmq::message_t drained;
                while (wake_rx_->recv(drained, zmq::recv_flags::dontwait)) {}
            }
            if (items[0].revents & ZMQ_POLLIN) ReceiveAll();
            if ((items[2].revents & ZMQ_POLLIN) && sockets::LostConnection(*monitor_) &&
                phase_ != Phase::Open && phase_ != Phase::Closed) {
                Reconnect();  // the runtime died or missed its heartbeats: re-open the session
                continue;
            }
            Heartbeat();
        }
        if (phase_ == Phase::Streaming || phase_ == Phase::AwaitStarted) {
            sockets::TrySend(*socket_, wire::DriveEnd(request_id_, token_));  // be polite
        }
    } catch (const std::exception& e) {
        SetState(DriveState::Failed, Status(ErrorCode::Internal, std::string("drive thread: ") + e.what()));
    }
    monitor_.reset();
    socket_.reset();
    wake_rx_.reset();
}

void DriveSession::Impl::Connect() {
    sockets::Dealer dealer = sockets::ConnectDealer(*context_, endpoint_);
    monitor_ = std::move(dealer.monitor);
    socket_ = std::move(dealer.socket);
}

void DriveSession::Impl::SendHeader() {
    request_id_ = sockets::NextRequestId();
    if (sockets::TrySend(*socket_, wire::DriveHeader(request_id_, token_, options_))) {
        phase_ = Phase::AwaitStarted;
        last_rx_ = Clock::now();
    }
}

void DriveSession::Impl::FlushOutgoing() {
    std::deque<MotionFrame> frames;
    bool end;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        frames.swap(outgoing_);
        end = end_requested_;
    }
    uint64_t sent = 0;
    for (const MotionFrame& frame : frames) {
        // Not connected, or the runtime's queue is full: drop (latest-wins anyway).
        if (sockets::TrySend(*socket_, wire::DriveFrame(request_id_, token_, frame))) {
            ++sent;
            sent_.push_back(frame);
            if (sent_.size() > kMaxUnmatched) sent_.pop_front();
        }
    }
    if (sent) {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.frames_sent += sent;
    }
    if (end && sockets::TrySend(*socket_, wire::DriveEnd(request_id_, token_))) {
        phase_ = Phase::AwaitStatus;
    }
}

void DriveSession::Impl::ReceiveAll() {
    zmq::message_t message;
    while (phase_ != Phase::Closed && socket_->recv(message, zmq::recv_flags::dontwait)) {
        last_rx_ = Clock::now();
        Result<wire::Reply> reply = wire::ParseReply(message.data(), message.size());
        if (reply.ok() && reply->kind == "Drive" && reply->request_id == request_id_) {
            OnReply(reply.value());
        }
    }
}

void DriveSession::Impl::OnReply(wire::Reply& reply) {
    if (!reply.error.ok()) {
        OnError(reply.error);
        return;
    }
    if (wire::Field(reply.body, "header")) {
        phase_ = Phase::Streaming;
        SetState(DriveState::Streaming);
    } else if (const msgpack::object* frame = wire::Field(reply.body, "frame")) {
        OnFrame(frame);
    } else if (const msgpack::object* status = wire::Field(reply.body, "status")) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            wire::ToDriveStatus(status, stats_);
        }
        if (phase_ == Phase::AwaitStatus) {
            phase_ = Phase::Closed;
            SetState(DriveState::Ended);
        } else {
            Reconnect();  // the runtime closed the session on its own (e.g. shutting down)
        }
    }
}

void DriveSession::Impl::OnFrame(const msgpack::object* body) {
    Result<Frame> frame = wire::ToFrame(body);
    if (!frame.ok()) {
        OnError(frame.status());
        return;
    }
    frame->received_at = Clock::now();
    // Frames come back in order and latest-wins only skips: the match is the newest sent
    // frame with this sequence, and everything sent before it will not come back.
    for (auto it = sent_.rbegin(); it != sent_.rend(); ++it) {
        if (it->sequence == frame->sequence) {
            frame->motion = *it;
            frame->has_motion = true;
            sent_.erase(sent_.begin(), it.base());
            break;
        }
    }
    FrameCallback callback;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        callback = callback_;
    }
    if (callback) callback(frame.value());
    std::lock_guard<std::mutex> lock(mutex_);
    if (frame->has_motion) {
        rendered_motion_ = frame->motion;
        has_rendered_motion_ = true;
    }
    latest_ = std::move(frame.value());
    has_latest_ = true;
    ++stats_.frames_received;
}

void DriveSession::Impl::OnError(const Status& error) {
    if (phase_ != Phase::AwaitStatus && Recoverable(error.code(), phase_ == Phase::Streaming)) {
        Reconnect();
        return;
    }
    phase_ = Phase::Closed;
    SetState(DriveState::Failed, error);
}

void DriveSession::Impl::Heartbeat() {
    if (phase_ == Phase::Open || phase_ == Phase::Closed) return;
    const auto now = Clock::now();
    if (now - last_rx_ > session_.server_timeout) {
        Reconnect();
        return;
    }
    if (now - last_rx_ > session_.heartbeat && now - last_ping_ > session_.heartbeat) {
        sockets::TrySend(*socket_, wire::Health(sockets::NextRequestId()));
        last_ping_ = now;
    }
}

void DriveSession::Impl::Reconnect() {
    Connect();  // a fresh identity; old replies are gone
    phase_ = Phase::Open;
    sent_.clear();  // a new session renders only what is sent from now on
    retry_at_ = Clock::now() + session_.retry_delay;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.reconnects;
        while (outgoing_.size() > 1) outgoing_.pop_front();
    }
    SetState(DriveState::Connecting);
}

}  // namespace avatar_bridge
