#include "Wire.h"

#include <cstring>

namespace avatar_bridge::wire {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

// Starts {kind, request_id, [token], body: <caller packs the body next>}.
void Envelope(Packer& pk, const char* kind, int64_t request_id, const std::string& token) {
    pk.pack_map(token.empty() ? 3 : 4);
    pk.pack(std::string("kind"));
    pk.pack(std::string(kind));
    pk.pack(std::string("request_id"));
    pk.pack_int64(request_id);
    if (!token.empty()) {
        pk.pack(std::string("token"));
        pk.pack(token);
    }
    pk.pack(std::string("body"));
}

void Key(Packer& pk, const char* key) { pk.pack_str(uint32_t(std::strlen(key))); pk.pack_str_body(key, uint32_t(std::strlen(key))); }

template <typename Array>
void Floats(Packer& pk, const Array& values) {
    pk.pack_array(uint32_t(values.size()));
    for (float v : values) pk.pack_float(v);
}

// The weights, pose, gaze, sequence and timecode of a MotionFrame map (no source).
void Motion(Packer& pk, const MotionFrame& frame) {
    pk.pack_map(frame.has_eye_gaze ? 6 : 5);
    Key(pk, "arkit");
    Floats(pk, frame.arkit);
    Key(pk, "head_rotation");
    Floats(pk, frame.head_rotation);
    Key(pk, "head_translation");
    Floats(pk, frame.head_translation);
    if (frame.has_eye_gaze) {
        Key(pk, "eye_gaze");
        Floats(pk, frame.eye_gaze);
    }
    Key(pk, "sequence");
    pk.pack_uint64(frame.sequence);
    Key(pk, "timecode");
    pk.pack_double(frame.timecode);
}

Bytes Take(msgpack::sbuffer& buffer) { return Bytes(buffer.data(), buffer.size()); }

std::string String(const msgpack::object* o) {
    return (o && o->type == msgpack::type::STR) ? std::string(o->via.str.ptr, o->via.str.size)
                                                : std::string();
}

double Number(const msgpack::object* o) {
    if (!o) return 0.0;
    switch (o->type) {
        case msgpack::type::POSITIVE_INTEGER: return double(o->via.u64);
        case msgpack::type::NEGATIVE_INTEGER: return double(o->via.i64);
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64: return o->via.f64;
        default: return 0.0;
    }
}

uint64_t Unsigned(const msgpack::object* o) {
    return (o && o->type == msgpack::type::POSITIVE_INTEGER) ? o->via.u64 : 0;
}

}  // namespace

Bytes Health(int64_t request_id) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "Health", request_id, "");
    pk.pack_map(0);
    return Take(buffer);
}

Bytes ListAvatars(int64_t request_id, const std::string& token) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "ListAvatars", request_id, token);
    pk.pack_map(0);
    return Take(buffer);
}

Bytes CreateAvatar(int64_t request_id, const std::string& token, const uint8_t* image,
                   size_t size, const std::string& name) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "CreateAvatar", request_id, token);
    pk.pack_map(2);
    Key(pk, "image");
    pk.pack_bin(uint32_t(size));
    pk.pack_bin_body(reinterpret_cast<const char*>(image), uint32_t(size));
    Key(pk, "name");
    pk.pack(name);
    return Take(buffer);
}

Bytes GetAvatar(int64_t request_id, const std::string& token, const std::string& avatar_id) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "GetAvatar", request_id, token);
    pk.pack_map(1);
    Key(pk, "avatar_id");
    pk.pack(avatar_id);
    return Take(buffer);
}

Bytes DriveHeader(int64_t request_id, const std::string& token, const DriveOptions& options) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "Drive", request_id, token);
    pk.pack_map(1);
    Key(pk, "header");
    pk.pack_map(4);
    Key(pk, "avatar_id");
    pk.pack(options.avatar_id);
    Key(pk, "camera");
    pk.pack_map(4);
    Key(pk, "c2w");
    pk.pack_array(uint32_t(options.c2w.size()));
    for (double v : options.c2w) pk.pack_double(v);
    Key(pk, "fov_y_deg");
    pk.pack_float(options.fov_y_deg);
    Key(pk, "width");
    pk.pack_uint32(options.width);
    Key(pk, "height");
    pk.pack_uint32(options.height);
    Key(pk, "options");
    pk.pack_map(1);
    Key(pk, "encoding");
    pk.pack(std::string("ENCODING_RAW"));
    Key(pk, "smoothing");
    pk.pack_map(1);
    Key(pk, "enabled");
    if (options.smoothing) pk.pack_true(); else pk.pack_false();
    return Take(buffer);
}

Bytes DriveFrame(int64_t request_id, const std::string& token, const MotionFrame& frame) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "Drive", request_id, token);
    pk.pack_map(1);
    Key(pk, "frame");
    Motion(pk, frame);
    return Take(buffer);
}

Bytes DriveEnd(int64_t request_id, const std::string& token) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "Drive", request_id, token);
    pk.pack_map(1);
    Key(pk, "end");
    pk.pack_map(0);
    return Take(buffer);
}

Bytes SolveMotion(int64_t request_id, const std::string& token, const uint8_t* image, size_t size,
                  const std::string& avatar_id, uint64_t sequence, double timecode) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "SolveMotion", request_id, token);
    pk.pack_map(4);
    Key(pk, "image");
    pk.pack_bin(uint32_t(size));
    pk.pack_bin_body(reinterpret_cast<const char*>(image), uint32_t(size));
    Key(pk, "avatar_id");
    pk.pack(avatar_id);
    Key(pk, "sequence");
    pk.pack_uint64(sequence);
    Key(pk, "timecode");
    pk.pack_double(timecode);
    return Take(buffer);
}

namespace {
// {avatar_id, neutral: <caller packs the MotionFrame's source map next>}.
void NeutralRequest(Packer& pk, const std::string& token, int64_t request_id,
                    const std::string& avatar_id) {
    Envelope(pk, "CalibrateNeutral", request_id, token);
    pk.pack_map(2);
    Key(pk, "avatar_id");
    pk.pack(avatar_id);
    Key(pk, "neutral");
}
}  // namespace

Bytes CalibrateNeutral(int64_t request_id, const std::string& token, const std::string& avatar_id,
                       const uint8_t* image, size_t size) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    NeutralRequest(pk, token, request_id, avatar_id);
    pk.pack_map(1);
    Key(pk, "image");
    pk.pack_bin(uint32_t(size));
    pk.pack_bin_body(reinterpret_cast<const char*>(image), uint32_t(size));
    return Take(buffer);
}

Bytes CalibrateNeutral(int64_t request_id, const std::string& token, const std::string& avatar_id,
                       const FaceLandmarks& landmarks) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    NeutralRequest(pk, token, request_id, avatar_id);
    pk.pack_map(1);
    Key(pk, "landmarks");
    pk.pack_map(3);
    Key(pk, "xyz");
    Floats(pk, landmarks.xyz);
    Key(pk, "width");
    pk.pack_uint32(landmarks.width);
    Key(pk, "height");
    pk.pack_uint32(landmarks.height);
    return Take(buffer);
}

Bytes ResetNeutral(int64_t request_id, const std::string& token, const std::string& avatar_id) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "CalibrateNeutral", request_id, token);
    pk.pack_map(2);
    Key(pk, "avatar_id");
    pk.pack(avatar_id);
    Key(pk, "reset");
    pk.pack_true();
    return Take(buffer);
}

Bytes ExportMesh(int64_t request_id, const std::string& token, const std::string& avatar_id,
                 const ExportOptions& options) {
    msgpack::sbuffer buffer;
    Packer pk(buffer);
    Envelope(pk, "ExportMesh", request_id, token);
    pk.pack_map(options.has_motion ? 5 : 4);
    Key(pk, "avatar_id");
    pk.pack(avatar_id);
    Key(pk, "chunk_bytes");
    pk.pack_uint32(options.chunk_bytes);
    Key(pk, "format");
    pk.pack(options.format);
    Key(pk, "source");
    pk.pack(options.source);
    if (options.has_motion) {
        Key(pk, "motion");
        Motion(pk, options.motion);
    }
    return Take(buffer);
}

const msgpack::object* Field(const msgpack::object* map, const char* key) {
    if (!map || map->type != msgpack::type::MAP) return nullptr;
    const size_t len = std::strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; ++i) {
        const msgpack::object_kv& kv = map->via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR && kv.key.via.str.size == len &&
            std::memcmp(kv.key.via.str.ptr, key, len) == 0) {
            return &kv.val;
        }
    }
    return nullptr;
}

Result<Reply> ParseReply(const void* data, size_t size) {
    Reply reply;
    try {
        reply.handle = msgpack::unpack(static_cast<const char*>(data), size);
    } catch (const std::exception& e) {
        return Status(ErrorCode::InvalidArgument, std::string("reply is not msgpack: ") + e.what());
    }
    const msgpack::object* root = &reply.handle.get();
    if (root->type != msgpack::type::MAP) {
        return Status(ErrorCode::InvalidArgument, "reply is not a msgpack map");
    }
    reply.kind = String(Field(root, "kind"));
    const msgpack::object* id = Field(root, "request_id");
    if (id && (id->type == msgpack::type::POSITIVE_INTEGER ||
               id->type == msgpack::type::NEGATIVE_INTEGER)) {
        reply.request_id = id->via.i64;
    }
    const msgpack::object* last = Field(root, "last");
    reply.last = !(last && last->type == msgpack::type::BOOLEAN && !last->via.boolean);
    if (const msgpack::object* error = Field(root, "error")) {
        reply.error = Status(ErrorCodeFromString(String(Field(error, "code"))),
                             String(Field(error, "message")));
        if (reply.error.ok()) reply.error = Status(ErrorCode::Unknown, "malformed error reply");
    }
    const msgpack::object* body = Field(root, "body");
    reply.body = (body && body->type == msgpack::type::MAP) ? body : nullptr;
    return reply;
}

AvatarInfo ToAvatar(const msgpack::object* avatar) {
    AvatarInfo info;
    info.id = String(Field(avatar, "id"));
    info.name = String(Field(avatar, "name"));
    info.reconstructor = String(Field(avatar, "reconstructor"));
    info.created_at = Number(Field(avatar, "created_at"));
    info.meta_json = String(Field(avatar, "meta_json"));
    return info;
}

Result<Frame> ToFrame(const msgpack::object* frame) {
    Frame out;
    out.sequence = Unsigned(Field(frame, "sequence"));
    out.timecode = Number(Field(frame, "timecode"));
    out.width = uint32_t(Unsigned(Field(frame, "width")));
    out.height = uint32_t(Unsigned(Field(frame, "height")));
    out.render_ms = float(Number(Field(frame, "render_ms")));
    out.encode_ms = float(Number(Field(frame, "encode_ms")));
    const std::string encoding = String(Field(frame, "encoding"));
    if (encoding != "ENCODING_RAW") {
        return Status(ErrorCode::InvalidArgument, "frame encoding " + encoding +
                                                      " is not supported; the client asks for raw");
    }
    const msgpack::object* rgba = Field(frame, "rgba");
    const size_t expected = size_t(out.width) * out.height * 4;
    if (!rgba || rgba->type != msgpack::type::BIN || rgba->via.bin.size != expected) {
        return Status(ErrorCode::InvalidArgument,
                      "frame rgba is not width * height * 4 = " + std::to_string(expected) + " bytes");
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(rgba->via.bin.ptr);
    out.rgba.assign(bytes, bytes + expected);
    return out;
}

namespace {

// A float array of exactly `N` values into `out` (an empty or absent array leaves it as is).
template <size_t N>
bool FloatArray(const msgpack::object* o, std::array<float, N>& out, bool* present = nullptr) {
    if (present) *present = false;
    if (!o || o->type != msgpack::type::ARRAY || o->via.array.size == 0) return true;
    if (o->via.array.size != N) return false;
    for (size_t i = 0; i < N; ++i) out[i] = float(Number(&o->via.array.ptr[i]));
    if (present) *present = true;
    return true;
}

}  // namespace

Result<MotionFrame> ToMotion(const msgpack::object* motion) {
    MotionFrame out;
    if (!motion || motion->type != msgpack::type::MAP) {
        return Status(ErrorCode::InvalidArgument, "motion frame is not a map");
    }
    if (!FloatArray(Field(motion, "arkit"), out.arkit) ||
        !FloatArray(Field(motion, "head_rotation"), out.head_rotation) ||
        !FloatArray(Field(motion, "head_translation"), out.head_translation) ||
        !FloatArray(Field(motion, "eye_gaze"), out.eye_gaze, &out.has_eye_gaze)) {
        return Status(ErrorCode::InvalidArgument, "motion frame vectors must be 52 / 4 / 3 / 4 values");
    }
    out.sequence = Unsigned(Field(motion, "sequence"));
    out.timecode = Number(Field(motion, "timecode"));
    return out;
}

Result<MeshChunk> ToMeshChunk(const msgpack::object* chunk) {
    MeshChunk out;
    const msgpack::object* data = Field(chunk, "data");
    if (!data || data->type != msgpack::type::BIN) {
        return Status(ErrorCode::InvalidArgument, "mesh chunk without bytes in `data`");
    }
    out.data = reinterpret_cast<const uint8_t*>(data->via.bin.ptr);
    out.size = data->via.bin.size;
    out.file_name = String(Field(chunk, "file_name"));
    out.mime_type = String(Field(chunk, "mime_type"));
    out.sha256 = String(Field(chunk, "sha256"));
    out.offset = Unsigned(Field(chunk, "offset"));
    out.total_bytes = Unsigned(Field(chunk, "total_bytes"));
    const msgpack::object* last = Field(chunk, "last");
    out.last = last && last->type == msgpack::type::BOOLEAN && last->via.boolean;
    return out;
}

void ToDriveStatus(const msgpack::object* status, DriveStats& stats) {
    stats.server_received = Unsigned(Field(status, "frames_received"));
    stats.server_rendered = Unsigned(Field(status, "frames_rendered"));
    stats.server_dropped = Unsigned(Field(status, "frames_dropped"));
}

}  // namespace avatar_bridge::wire
