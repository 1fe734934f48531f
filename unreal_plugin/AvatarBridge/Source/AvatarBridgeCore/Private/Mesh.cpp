#include "AvatarBridgeCore/Mesh.h"

namespace avatar_bridge {
namespace {

Status Loss(const std::string& file, const std::string& what) {
    return Status(ErrorCode::DataLoss, file + ": " + what);
}

}  // namespace

Status MeshAssembler::Add(const MeshChunk& chunk) {
    if (!open_) {
        for (const MeshFile& file : done_) {
            if (file.file_name == chunk.file_name) return Loss(chunk.file_name, "a chunk after the file's last one");
        }
        current_ = MeshFile{chunk.file_name, chunk.mime_type, "", {}};
        current_total_ = chunk.total_bytes;
        open_ = true;
    } else if (chunk.file_name != current_.file_name) {
        return Loss(current_.file_name, "ended without its last chunk (next: " + chunk.file_name + ")");
    }
    const uint64_t have = current_.data.size();
    if (chunk.offset != have) {
        return Loss(chunk.file_name, "chunk at offset " + std::to_string(chunk.offset) + ", expected " +
                                         std::to_string(have));
    }
    if (chunk.total_bytes != current_total_) {
        return Loss(chunk.file_name, "total_bytes changed from " + std::to_string(current_total_) + " to " +
                                         std::to_string(chunk.total_bytes));
    }
    if (have + chunk.size > current_total_) {
        return Loss(chunk.file_name, "more than total_bytes = " + std::to_string(current_total_));
    }
    current_.data.insert(current_.data.end(), chunk.data, chunk.data + chunk.size);
    if (!chunk.last) return Status::Ok();
    open_ = false;
    if (current_.data.size() != current_total_) {
        return Loss(chunk.file_name, "ended at " + std::to_string(current_.data.size()) + " of " +
                                         std::to_string(current_total_) + " bytes");
    }
    const std::string digest = Sha256Hex(current_.data.data(), current_.data.size());
    if (digest != chunk.sha256) {
        return Loss(chunk.file_name, "sha256 " + digest + " does not match the runtime's '" + chunk.sha256 + "'");
    }
    current_.sha256 = digest;
    done_.push_back(std::move(current_));
    current_ = MeshFile{};
    return Status::Ok();
}

Result<std::vector<MeshFile>> MeshAssembler::Finish() {
    if (open_) return Loss(current_.file_name, "the export ended before the file's last chunk");
    if (done_.empty()) return Status(ErrorCode::DataLoss, "the export ended without any file");
    return std::move(done_);
}

}  // namespace avatar_bridge
