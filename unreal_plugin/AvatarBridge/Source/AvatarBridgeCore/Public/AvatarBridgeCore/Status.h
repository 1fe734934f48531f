// Errors as values: every public call of the core returns a Status or a Result<T>;
// nothing throws across the API (exceptions from libzmq / msgpack are caught inside).
#pragma once

#include "AvatarBridgeCore/Export.h"

#include <optional>
#include <string>
#include <utility>

namespace avatar_bridge {

// The runtime's error vocabulary (DESIGN.md section 5) plus the client-side outcomes.
enum class ErrorCode {
    Ok,
    InvalidArgument,     // bad bytes, wrong lengths, limits
    NotFound,            // unknown avatar
    FailedPrecondition,  // no face found
    ResourceExhausted,   // limits, queue
    Unauthenticated,     // missing or wrong token
    Unimplemented,
    DeadlineExceeded,    // no reply in time
    Unavailable,         // runtime not reachable, shutting down, or restarted
    Internal,            // a bug (the runtime logs it with a request id)
    DataLoss,            // a received file does not match its size or sha256
    Unknown,
};

// "INVALID_ARGUMENT" -> ErrorCode::InvalidArgument; unknown strings -> Unknown.
AB_CORE_API ErrorCode ErrorCodeFromString(const std::string& code);
AB_CORE_API const char* ErrorCodeName(ErrorCode code);

class AB_CORE_API Status {
public:
    Status() = default;
    Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status Ok() { return {}; }

    bool ok() const { return code_ == ErrorCode::Ok; }
    ErrorCode code() const { return code_; }
    const std::string& message() const { return message_; }
    // "NOT_FOUND: avatar 'x' does not exist" (or "OK").
    std::string ToString() const;

private:
    ErrorCode code_ = ErrorCode::Ok;
    std::string message_;
};

// A value or the Status saying why there is none.
template <typename T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}                    // NOLINT: implicit on purpose
    Result(Status status) : status_(std::move(status)) {}            // NOLINT
    Result(ErrorCode code, std::string message) : status_(code, std::move(message)) {}

    bool ok() const { return value_.has_value(); }
    const Status& status() const { return status_; }
    T& value() { return *value_; }
    const T& value() const { return *value_; }
    T& operator*() { return *value_; }
    const T& operator*() const { return *value_; }
    T* operator->() { return &*value_; }
    const T* operator->() const { return &*value_; }

private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace avatar_bridge
