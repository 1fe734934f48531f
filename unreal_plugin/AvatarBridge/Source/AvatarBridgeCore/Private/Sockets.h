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

// A DEALER connected to `endpoint`: no linger, and ZMQ_IMMEDIATE so nothing queues for a
// runtime that is not connected (a restarted runtime never sees stale requests).
std::unique_ptr<zmq::socket_t> Dealer(zmq::context_t& context, const std::string& endpoint);

// Sends, waiting up to `timeout` for the connection: false if it never became writable.
bool SendWithin(zmq::socket_t& socket, const wire::Bytes& bytes, std::chrono::milliseconds timeout);

// Non-blocking send: false if the runtime is not connected or its queue is full.
bool TrySend(zmq::socket_t& socket, const wire::Bytes& bytes);

// The next message within `timeout`, or nullopt.
std::optional<zmq::message_t> Receive(zmq::socket_t& socket, std::chrono::milliseconds timeout);

// Process-wide request ids, so replies to an abandoned request never match a new one.
int64_t NextRequestId();

}  // namespace avatar_bridge::sockets
