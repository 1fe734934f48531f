#include "AvatarBridgeCore/RuntimeClient.h"

#include <functional>
#include <mutex>

#include "DriveSessionImpl.h"
#include "Sockets.h"
#include "Wire.h"

namespace avatar_bridge {

struct RuntimeClient::Impl {
    ClientOptions options;
    sockets::Context context = std::make_shared<zmq::context_t>(1);
    std::mutex mutex;  // one call at a time on `dealer`
    sockets::Dealer dealer;

    // Sends `request` and returns the final reply (error replies become a Status). A call that
    // times out, or whose connection drops (the monitor's DISCONNECTED: the runtime died or
    // missed its heartbeats), resets the socket, so late replies and queued requests are
    // discarded and the next call reaches a restarted runtime. `on_reply`, when given, sees
    // every reply of the call (streams: CreateAvatar progress, ExportMesh chunks); an error it
    // returns ends the call (the socket is reset, so the rest of the stream is discarded).
    using OnReply = std::function<Status(const wire::Reply&)>;
    Result<wire::Reply> Call(const wire::Bytes& request, int64_t request_id,
                             std::chrono::milliseconds timeout, const OnReply& on_reply = nullptr) {
        std::lock_guard<std::mutex> lock(mutex);
        try {
            if (!dealer) dealer = sockets::ConnectDealer(*context, options.endpoint);
            sockets::LostConnection(*dealer.monitor);  // drops while idle: libzmq reconnects
            if (!sockets::SendWithin(*dealer.socket, request, timeout)) {
                dealer.reset();
                return Status(ErrorCode::Unavailable, "avatar-runtime is not reachable at " +
                                                          options.endpoint);
            }
            const auto deadline = sockets::Clock::now() + timeout;
            while (true) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - sockets::Clock::now());
                zmq::pollitem_t items[] = {{dealer.socket->handle(), 0, ZMQ_POLLIN, 0},
                                           {dealer.monitor->handle(), 0, ZMQ_POLLIN, 0}};
                if (left.count() <= 0 || zmq::poll(items, 2, left) <= 0) {
                    dealer.reset();
                    return Status(ErrorCode::DeadlineExceeded,
                                  "no reply from avatar-runtime within " +
                                      std::to_string(timeout.count()) + " ms");
                }
                if ((items[1].revents & ZMQ_POLLIN) && sockets::LostConnection(*dealer.monitor)) {
                    dealer.reset();
                    return sockets::ConnectionLost(options.endpoint);
                }
                zmq::message_t message;
                if (!(items[0].revents & ZMQ_POLLIN) ||
                    !dealer.socket->recv(message, zmq::recv_flags::dontwait)) {
                    continue;
                }
                Result<wire::Reply> reply = wire::ParseReply(message.data(), message.size());
                if (!reply.ok()) return reply.status();
                if (reply->request_id != request_id) continue;  // a late reply to an old call
                if (!reply->error.ok()) return reply->error;
                if (on_reply) {
                    Status status = on_reply(reply.value());
                    if (!status.ok()) {
                        dealer.reset();
                        return status;
                    }
                }
                if (reply->last) return reply;
            }
        } catch (const std::exception& e) {
            dealer.reset();
            return Status(ErrorCode::Internal, std::string("ZeroMQ: ") + e.what());
        }
    }
};

RuntimeClient::RuntimeClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RuntimeClient::~RuntimeClient() = default;

const ClientOptions& RuntimeClient::options() const { return impl_->options; }

Result<std::unique_ptr<RuntimeClient>> RuntimeClient::Connect(const ClientOptions& options) {
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    std::unique_ptr<RuntimeClient> client(new RuntimeClient(std::move(impl)));
    const Status status = client->Ping();
    if (!status.ok()) return status;
    return client;
}

Status RuntimeClient::Ping() {
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(wire::ListAvatars(id, impl_->options.token), id,
                             impl_->options.call_timeout);
    return reply.ok() ? Status::Ok() : reply.status();
}

Result<AvatarInfo> RuntimeClient::CreateAvatar(const std::vector<uint8_t>& image,
                                               const std::string& name) {
    if (image.empty()) return Status(ErrorCode::InvalidArgument, "image is empty");
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(
        wire::CreateAvatar(id, impl_->options.token, image.data(), image.size(), name), id,
        impl_->options.create_timeout);
    if (!reply.ok()) return reply.status();
    const msgpack::object* avatar = wire::Field(reply->body, "avatar");
    if (!avatar) return Status(ErrorCode::Internal, "CreateAvatar ended without an avatar");
    return wire::ToAvatar(avatar);
}

Result<AvatarInfo> RuntimeClient::GetAvatar(const std::string& avatar_id) {
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(wire::GetAvatar(id, impl_->options.token, avatar_id), id,
                             impl_->options.call_timeout);
    if (!reply.ok()) return reply.status();
    return wire::ToAvatar(reply->body);
}

Result<MotionFrame> RuntimeClient::SolveMotion(const std::vector<uint8_t>& image,
                                               const std::string& avatar_id, uint64_t sequence,
                                               double timecode) {
    if (image.empty()) return Status(ErrorCode::InvalidArgument, "image is empty");
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(wire::SolveMotion(id, impl_->options.token, image.data(), image.size(),
                                               avatar_id, sequence, timecode),
                             id, impl_->options.solve_timeout);
    if (!reply.ok()) return reply.status();
    return wire::ToMotion(reply->body);
}

Result<MotionFrame> RuntimeClient::CalibrateNeutral(const std::string& avatar_id,
                                                    const std::vector<uint8_t>& image) {
    if (avatar_id.empty()) return Status(ErrorCode::InvalidArgument, "avatar_id is empty");
    if (image.empty()) return Status(ErrorCode::InvalidArgument, "image is empty");
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(
        wire::CalibrateNeutral(id, impl_->options.token, avatar_id, image.data(), image.size()), id,
        impl_->options.solve_timeout);
    if (!reply.ok()) return reply.status();
    return wire::ToMotion(reply->body);
}

Result<MotionFrame> RuntimeClient::CalibrateNeutral(const std::string& avatar_id,
                                                    const FaceLandmarks& landmarks) {
    if (avatar_id.empty()) return Status(ErrorCode::InvalidArgument, "avatar_id is empty");
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(wire::CalibrateNeutral(id, impl_->options.token, avatar_id, landmarks),
                             id, impl_->options.solve_timeout);
    if (!reply.ok()) return reply.status();
    return wire::ToMotion(reply->body);
}

Status RuntimeClient::ResetNeutral(const std::string& avatar_id) {
    if (avatar_id.empty()) return Status(ErrorCode::InvalidArgument, "avatar_id is empty");
    const int64_t id = sockets::NextRequestId();
    auto reply = impl_->Call(wire::ResetNeutral(id, impl_->options.token, avatar_id), id,
                             impl_->options.call_timeout);
    return reply.ok() ? Status::Ok() : reply.status();
}

Result<std::vector<MeshFile>> RuntimeClient::ExportMesh(const std::string& avatar_id,
                                                        const ExportOptions& options) {
    if (avatar_id.empty()) return Status(ErrorCode::InvalidArgument, "avatar_id is empty");
    const int64_t id = sockets::NextRequestId();
    MeshAssembler assembler;
    auto reply = impl_->Call(
        wire::ExportMesh(id, impl_->options.token, avatar_id, options), id,
        impl_->options.export_timeout, [&](const wire::Reply& r) {
            Result<MeshChunk> chunk = wire::ToMeshChunk(r.body);
            return chunk.ok() ? assembler.Add(chunk.value()) : chunk.status();
        });
    if (!reply.ok()) return reply.status();
    return assembler.Finish();
}

Result<std::unique_ptr<DriveSession>> RuntimeClient::StartDrive(const DriveOptions& options,
                                                                const SessionOptions& session) {
    if (options.avatar_id.empty()) return Status(ErrorCode::InvalidArgument, "avatar_id is empty");
    if (options.width == 0 || options.height == 0) {
        return Status(ErrorCode::InvalidArgument, "width and height must be positive");
    }
    if (!options.c2w.empty() && options.c2w.size() != 16) {
        return Status(ErrorCode::InvalidArgument, "c2w must be empty or 16 values (4x4 row-major)");
    }
    try {
        auto impl = std::make_unique<DriveSession::Impl>(impl_->context, impl_->options.endpoint,
                                                         impl_->options.token, options, session);
        impl->Start();
        return std::make_unique<DriveSession>(std::move(impl));
    } catch (const std::exception& e) {
        return Status(ErrorCode::Internal, std::string("cannot start the drive thread: ") + e.what());
    }
}

}  // namespace avatar_bridge
