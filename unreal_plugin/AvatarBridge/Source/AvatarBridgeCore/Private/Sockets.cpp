#include "Sockets.h"

#include <cstring>

namespace avatar_bridge::sockets {

Dealer ConnectDealer(zmq::context_t& context, const std::string& endpoint) {
    Dealer dealer;
    dealer.socket = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
    zmq::socket_t& socket = *dealer.socket;
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::immediate, 1);
    socket.set(zmq::sockopt::rcvhwm, 64);
    socket.set(zmq::sockopt::reconnect_ivl, 100);
    socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
    socket.set(zmq::sockopt::heartbeat_ivl, kHeartbeatIvlMs);
    socket.set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
    socket.set(zmq::sockopt::heartbeat_ttl, kHeartbeatTtlMs);
    // A unique name: a closed monitor's inproc name stays bound until libzmq reaps it.
    const std::string address = "inproc://avatar-bridge-monitor-" + std::to_string(NextRequestId());
    if (zmq_socket_monitor(socket.handle(), address.c_str(),
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) {
        throw zmq::error_t();
    }
    dealer.monitor = std::make_unique<zmq::socket_t>(context, zmq::socket_type::pair);
    dealer.monitor->set(zmq::sockopt::linger, 0);
    dealer.monitor->connect(address);
    socket.connect(endpoint);
    return dealer;
}

bool LostConnection(zmq::socket_t& monitor, bool* connected) {
    bool lost = false;
    zmq::message_t event, address;
    while (monitor.recv(event, zmq::recv_flags::dontwait)) {
        // Two frames: uint16 event + uint32 value (native byte order), then the endpoint.
        if (event.more()) (void)monitor.recv(address, zmq::recv_flags::dontwait);
        if (event.size() < sizeof(uint16_t)) continue;
        uint16_t id = 0;
        std::memcpy(&id, event.data(), sizeof id);
        if (id == ZMQ_EVENT_DISCONNECTED) lost = true;
        if (connected && (id == ZMQ_EVENT_CONNECTED || id == ZMQ_EVENT_DISCONNECTED)) {
            *connected = id == ZMQ_EVENT_CONNECTED;
        }
    }
    return lost;
}

Status ConnectionLost(const std::string& endpoint) {
    return Status(ErrorCode::Unavailable,
                  "lost the connection to avatar-runtime at " + endpoint + " (it stopped, or stopped "
                  "answering heartbeats for " + std::to_string(kHeartbeatTimeoutMs) + " ms)");
}

bool SendWithin(zmq::socket_t& socket, const wire::Bytes& bytes, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
        if (TrySend(socket, bytes)) return true;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLOUT, 0};
        zmq::poll(&item, 1, std::min(left, std::chrono::milliseconds(50)));
    }
}

bool TrySend(zmq::socket_t& socket, const wire::Bytes& bytes) {
    return socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
}

int64_t NextRequestId() {
    static std::atomic<int64_t> next{1};
    return next++;
}

}  // namespace avatar_bridge::sockets
