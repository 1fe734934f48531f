// The runtime's ZeroMQ wire format (engine_bridge/zmq_server.py, engine_bridge/codec.py):
// msgpack maps that mirror the proto messages field by field (snake_case keys, bytes as bin,
// enums by name), wrapped in {kind, request_id, token, body}; replies carry
// {kind, request_id, body | error{code, message}, last}.
#pragma once

#include <cstdint>
#include <string>

#include <msgpack.hpp>

#include "AvatarBridgeCore/Mesh.h"
#include "AvatarBridgeCore/Status.h"
#include "AvatarBridgeCore/Types.h"

namespace avatar_bridge::wire {

using Bytes = std::string;  // one ZeroMQ message

Bytes Health(int64_t request_id);
Bytes ListAvatars(int64_t request_id, const std::string& token);
Bytes CreateAvatar(int64_t request_id, const std::string& token, const uint8_t* image,
                   size_t size, const std::string& name);
Bytes GetAvatar(int64_t request_id, const std::string& token, const std::string& avatar_id);
Bytes DriveHeader(int64_t request_id, const std::string& token, const DriveOptions& options);
Bytes DriveFrame(int64_t request_id, const std::string& token, const MotionFrame& frame);
Bytes DriveEnd(int64_t request_id, const std::string& token);
Bytes SolveMotion(int64_t request_id, const std::string& token, const uint8_t* image, size_t size,
                  const std::string& avatar_id, uint64_t sequence, double timecode);
// CalibrateNeutralRequest{avatar_id, neutral: {image} | {landmarks}} and {avatar_id, reset}.
Bytes CalibrateNeutral(int64_t request_id, const std::string& token, const std::string& avatar_id,
                       const uint8_t* image, size_t size);
Bytes CalibrateNeutral(int64_t request_id, const std::string& token, const std::string& avatar_id,
                       const FaceLandmarks& landmarks);
Bytes ResetNeutral(int64_t request_id, const std::string& token, const std::string& avatar_id);
Bytes ExportMesh(int64_t request_id, const std::string& token, const std::string& avatar_id,
                 const ExportOptions& options);

// One decoded reply. `body` points into `handle` (valid while the Reply lives).
struct Reply {
    std::string kind;
    int64_t request_id = -1;
    bool last = true;
    Status error;  // ok() unless the reply carried an error map
    msgpack::object_handle handle;
    const msgpack::object* body = nullptr;  // a map, or nullptr
};

// Bytes -> Reply; InvalidArgument if they are not a reply map.
Result<Reply> ParseReply(const void* data, size_t size);

// The member `key` of a msgpack map, or nullptr.
const msgpack::object* Field(const msgpack::object* map, const char* key);

AvatarInfo ToAvatar(const msgpack::object* avatar);
// A Frame map (ENCODING_RAW) -> Frame; InvalidArgument if the RGBA size does not match.
Result<Frame> ToFrame(const msgpack::object* frame);
// A MotionFrame map -> MotionFrame; InvalidArgument on wrong vector lengths.
Result<MotionFrame> ToMotion(const msgpack::object* motion);
// A MeshChunk map -> MeshChunk (`data` points into the reply); InvalidArgument if `data` is
// not bytes.
Result<MeshChunk> ToMeshChunk(const msgpack::object* chunk);
void ToDriveStatus(const msgpack::object* status, DriveStats& stats);

}  // namespace avatar_bridge::wire
