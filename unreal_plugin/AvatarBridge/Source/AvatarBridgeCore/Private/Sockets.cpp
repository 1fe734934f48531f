#include "Sockets.h"

namespace avatar_bridge::sockets {

std::unique_ptr<zmq::socket_t> Dealer(zmq::context_t& context, const std::string& endpoint) {
    auto socket = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
    socket->set(zmq::sockopt::linger, 0);
    socket->set(zmq::sockopt::immediate, 1);
    socket->set(zmq::sockopt::rcvhwm, 64);
    socket->set(zmq::sockopt::reconnect_ivl, 100);
    socket->set(zmq::sockopt::reconnect_ivl_max, 1000);
    socket->connect(endpoint);
    return socket;
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

std::optional<zmq::message_t> Receive(zmq::socket_t& socket, std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    zmq::message_t message;
    if (!socket.recv(message, zmq::recv_flags::dontwait)) return std::nullopt;
    return message;
}

int64_t NextRequestId() {
    static std::atomic<int64_t> next{1};
    return next++;
}

}  // namespace avatar_bridge::sockets
