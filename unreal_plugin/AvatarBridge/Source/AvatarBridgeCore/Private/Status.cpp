#include "AvatarBridgeCore/Status.h"

namespace avatar_bridge {
namespace {

struct Name {
    ErrorCode code;
    const char* name;
};

constexpr Name kNames[] = {
    {ErrorCode::Ok, "OK"},
    {ErrorCode::InvalidArgument, "INVALID_ARGUMENT"},
    {ErrorCode::NotFound, "NOT_FOUND"},
    {ErrorCode::FailedPrecondition, "FAILED_PRECONDITION"},
    {ErrorCode::ResourceExhausted, "RESOURCE_EXHAUSTED"},
    {ErrorCode::Unauthenticated, "UNAUTHENTICATED"},
    {ErrorCode::Unimplemented, "UNIMPLEMENTED"},
    {ErrorCode::DeadlineExceeded, "DEADLINE_EXCEEDED"},
    {ErrorCode::Unavailable, "UNAVAILABLE"},
    {ErrorCode::Internal, "INTERNAL"},
    {ErrorCode::DataLoss, "DATA_LOSS"},
    {ErrorCode::Unknown, "UNKNOWN"},
};

}  // namespace

ErrorCode ErrorCodeFromString(const std::string& code) {
    for (const Name& n : kNames) {
        if (code == n.name) return n.code;
    }
    return ErrorCode::Unknown;
}

const char* ErrorCodeName(ErrorCode code) {
    for (const Name& n : kNames) {
        if (n.code == code) return n.name;
    }
    return "UNKNOWN";
}

std::string Status::ToString() const {
    if (ok()) return "OK";
    return std::string(ErrorCodeName(code_)) + ": " + message_;
}

}  // namespace avatar_bridge
