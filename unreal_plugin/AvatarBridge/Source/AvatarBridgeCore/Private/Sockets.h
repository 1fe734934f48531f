// Small helpers over cppzmq shared by the client and its drive sessions.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "AvatarBridgeCore/Status.h"
#include "Wire.h"

namespace avatar_bridge::sockets {

using Clock = std::chrono::steady_clock;
using Context = std::shared_ptr<zmq::context_t>;

// ZMTP heartbeats on every DEALER (libzmq's PING/PONG, answered by the runtime's libzmq I/O
// thread whatever its Python is doing): ping every 0.5 s, drop the connection after 1.5 s
// without traffic; the runtime may drop us after 3 s of silence from our side.
constexpr int kHeartbeatIvlMs = 500;
constexpr int kHeartbeatTimeoutMs = 1500;
constexpr int kHeartbeatTtlMs = 3000;

// A DEALER connected to `endpoint`, and a monitor of its connection.
struct Dealer {
    std::unique_ptr<zmq::socket_t> socket;
    // PAIR receiving the socket's CONNECTED / DISCONNECTED events (see LostConnection).
    std::unique_ptr<zmq::socket_t> monitor;

    explicit operator bool() const { return socket != nullptr; }
    void reset() {
        monitor.reset();
        socket.reset();
    }
};

// No linger, ZMQ_IMMEDIATE so nothing queues for a runtime that is not connected (a restarted
// runtime never sees stale requests), heartbeats, and the monitor set up before connecting.
Dealer ConnectDealer(zmq::context_t& context, const std::string& endpoint);

// Drains the monitor's events: true if the connection dropped since the last call (the
// runtime's process died, or it stopped answering heartbeats). `connected` follows the events.
bool LostConnection(zmq::socket_t& monitor, bool* connected = nullptr);

// The error a call gets when the connection drops while it waits.
Status ConnectionLost(const std::string& endpoint);

// Sends, waiting up to `timeout` for the connection: false if it never became writable.
bool SendWithin(zmq::socket_t& socket, const wire::Bytes& bytes, std::chrono::milliseconds timeout);

// Non-blocking send: false if the runtime is not connected or its queue is full.
bool TrySend(zmq::socket_t& socket, const wire::Bytes& bytes);

// Process-wide request ids, so replies to an abandoned request never match a new one.
int64_t NextRequestId();

}  // namespace avatar_bridge::sockets
