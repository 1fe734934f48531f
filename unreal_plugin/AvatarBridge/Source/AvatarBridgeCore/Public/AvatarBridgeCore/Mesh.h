// ExportMesh's files, reassembled from MeshChunks and verified (docs/PROTOCOL.md section 4):
// every chunk's `offset` must equal the bytes already received for its file, `total_bytes`
// must stay the same and never be exceeded, and at the file's last chunk the length must be
// `total_bytes` and the SHA-256 must be the `sha256` the runtime sent. Anything else is
// DataLoss: a file is never handed out incomplete or altered.
#pragma once

#include "AvatarBridgeCore/Export.h"

#include <cstdint>
#include <string>
#include <vector>

#include "AvatarBridgeCore/Status.h"
#include "AvatarBridgeCore/Types.h"

namespace avatar_bridge {

struct MeshFile {
    std::string file_name;  // e.g. "avatar-<id>.glb"
    std::string mime_type;  // e.g. "model/gltf-binary"
    std::string sha256;     // lowercase hex, checked
    std::vector<uint8_t> data;
};

// What RuntimeClient::ExportMesh asks for (proto ExportMeshRequest).
struct ExportOptions {
    std::string format = "glb";  // "glb", "obj" (+ .mtl + .png) or "ply"
    std::string source;          // "" = "mesh" (the fitted head) or "volume"
    uint32_t chunk_bytes = 0;    // 0 = the runtime's default (1 MiB); at least 1024
    bool has_motion = false;     // false = neutral; glb stores `motion.arkit` as default weights
    MotionFrame motion;
};

// One MeshChunk as it arrived.
struct MeshChunk {
    std::string file_name;
    std::string mime_type;
    uint64_t offset = 0;
    uint64_t total_bytes = 0;
    std::string sha256;  // on the file's last chunk only
    bool last = false;   // the file's last chunk (not the call's)
    const uint8_t* data = nullptr;
    size_t size = 0;
};

class AB_CORE_API MeshAssembler {
public:
    // Appends one chunk; DataLoss on a gap, an overlap, a changed or exceeded total_bytes, a
    // wrong length or digest at the file's end, or a chunk of a file already completed.
    Status Add(const MeshChunk& chunk);
    // At the call's end: the completed files in arrival order; DataLoss if a file is
    // unfinished or none arrived.
    Result<std::vector<MeshFile>> Finish();

private:
    std::vector<MeshFile> done_;
    MeshFile current_;
    uint64_t current_total_ = 0;
    bool open_ = false;
};

// SHA-256 of `size` bytes as lowercase hex.
AB_CORE_API std::string Sha256Hex(const void* data, size_t size);

}  // namespace avatar_bridge
