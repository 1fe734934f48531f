#include "TestSupport.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>

#include "AvatarBridgeCore/Arkit.h"
#include "AvatarBridgeCore/Coordinates.h"

using namespace avatar_bridge;
using Clock = std::chrono::steady_clock;

Args ParseArgs(int argc, char** argv, int first) {
    Args args;
    for (int i = first; i + 1 < argc; i += 2) {
        const std::string key = argv[i];
        if (key == "--runtime") args.runtime = argv[i + 1];
        else if (key == "--portrait") args.portrait = argv[i + 1];
        else args.extra[key.substr(2)] = argv[i + 1];
    }
    return args;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

MotionFrame TestMotion(uint64_t sequence) {
    const double t = double(sequence) / 30.0;
    const std::vector<std::pair<std::string, float>> curves = {
        {"JawOpen", float(0.5 + 0.5 * std::sin(t * 4.0))},
        {"MouthSmileLeft", 0.3f},
        {"MouthSmileRight", 0.3f},
        {"EyeBlinkLeft", float(sequence % 40 < 4)},
        {"EyeBlinkRight", float(sequence % 40 < 4)},
        {"HeadYaw", float(0.3 * std::sin(t))},
        {"HeadPitch", float(0.1 * std::sin(t * 0.7))},
        {"HeadRoll", 0.f},
    };
    return MotionFromCurves(curves, sequence, t);
}

void Recorder::Attach(DriveSession& session) {
    session.SetFrameCallback([this](const Frame& frame) {
        std::lock_guard<std::mutex> lock(mutex_);
        sequences_.push_back(frame.sequence);
        sizes_.emplace_back(frame.width, frame.height);
        rgba_ok_.push_back(frame.rgba.size() == size_t(frame.width) * frame.height * 4);
        if (frame.has_motion && frame.motion.sequence == frame.sequence) {
            const MotionFrame expected = TestMotion(frame.sequence);
            bool same = true;
            for (int i = 0; i < kNumArkit; ++i) same &= std::fabs(frame.motion.arkit[i] - expected.arkit[i]) < 1e-6f;
            for (int i = 0; i < 4; ++i) {
                same &= std::fabs(frame.motion.head_rotation[i] - expected.head_rotation[i]) < 1e-5f;
            }
            with_test_motion_ += same;
        }
        const auto it = pushed_.find(frame.sequence);
        if (it != pushed_.end()) {
            latencies_ms_.push_back(
                std::chrono::duration<double, std::milli>(frame.received_at - it->second).count());
        }
        changed_.notify_all();
    });
}

void Recorder::MarkPushed(uint64_t sequence) {
    std::lock_guard<std::mutex> lock(mutex_);
    pushed_[sequence] = Clock::now();
}

bool Recorder::WaitForCount(size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return sequences_.size() >= count; });
}

bool Recorder::WaitForSequenceAbove(uint64_t sequence, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout,
                             [&] { return !sequences_.empty() && sequences_.back() > sequence; });
}

size_t Recorder::CountBetween(uint64_t first, uint64_t last) const {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t n = 0;
    for (uint64_t s : sequences_) n += s >= first && s <= last;
    return n;
}

std::vector<uint64_t> Recorder::sequences() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sequences_;
}

std::vector<double> Recorder::latencies_ms() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return latencies_ms_;
}

bool Recorder::all_sizes(uint32_t width, uint32_t height) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < sizes_.size(); ++i) {
        if (sizes_[i] != std::make_pair(width, height) || !rgba_ok_[i]) return false;
    }
    return true;
}

size_t Recorder::count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sequences_.size();
}

size_t Recorder::with_test_motion() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return with_test_motion_;
}

bool DrivePaced(DriveSession& session, Recorder& recorder, uint64_t first, size_t count,
                size_t window, std::chrono::milliseconds timeout) {
    const size_t base = recorder.count();
    for (size_t i = 0; i < count; ++i) {
        if (i >= window && !recorder.WaitForCount(base + i - window + 1, timeout)) return false;
        recorder.MarkPushed(first + i);
        if (!session.PushMotion(TestMotion(first + i)).ok()) return false;
    }
    return recorder.WaitForCount(base + count, timeout);
}

PacedRun DriveWithin(DriveSession& session, Recorder& recorder, uint64_t first, size_t count,
                     size_t window, std::chrono::milliseconds stall, Clock::time_point deadline) {
    using std::chrono::milliseconds;
    PacedRun run;
    const auto started = Clock::now();
    auto wait_for_answer = [&](uint64_t sequence) {  // `sequence` or a later one arrived
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        const milliseconds budget = std::max(milliseconds(1), std::min(stall, left));
        return sequence < first || recorder.WaitForSequenceAbove(sequence - 1, budget);
    };
    for (size_t i = 0; i < count; ++i) {
        if (Clock::now() >= deadline) {
            run.deadline_hit = true;
            break;
        }
        if (i >= window) wait_for_answer(first + i - window);
        recorder.MarkPushed(first + i);
        if (!session.PushMotion(TestMotion(first + i)).ok()) break;
        ++run.pushed;
    }
    if (run.pushed) wait_for_answer(first + run.pushed - 1);
    run.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    run.received = run.pushed ? recorder.CountBetween(first, first + run.pushed - 1) : 0;
    run.dropped = run.pushed - run.received;
    return run;
}
