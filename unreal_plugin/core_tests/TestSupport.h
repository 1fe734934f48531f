// Shared by the core tests and the benchmark: checks, arguments, a frame recorder and a
// paced driver (at most `window` frames in flight, so latest-wins drops nothing).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "AvatarBridgeCore/DriveSession.h"
#include "AvatarBridgeCore/Types.h"

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                               \
        }                                                                               \
    } while (0)

#define CHECK_OK(status_expr)                                                           \
    do {                                                                                \
        const auto& s_ = (status_expr);                                                 \
        if (!s_.ok()) {                                                                 \
            std::fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #status_expr, \
                         s_.ToString().c_str());                                        \
            std::exit(1);                                                               \
        }                                                                               \
    } while (0)

struct Args {
    std::string runtime;   // avatar-runtime executable
    std::string portrait;  // PNG of the sample portrait
    std::map<std::string, std::string> extra;
};
Args ParseArgs(int argc, char** argv, int first);  // --name value pairs from argv[first]

std::vector<uint8_t> ReadFile(const std::string& path);

// A smooth test motion: jaw, smile and blink curves plus a small head turn.
avatar_bridge::MotionFrame TestMotion(uint64_t sequence);

// Records every frame a session delivers (callback on the session thread).
class Recorder {
public:
    void Attach(avatar_bridge::DriveSession& session);
    void MarkPushed(uint64_t sequence);
    bool WaitForCount(size_t count, std::chrono::milliseconds timeout);
    bool WaitForSequenceAbove(uint64_t sequence, std::chrono::milliseconds timeout);
    // Frames received with a sequence in [first, last].
    size_t CountBetween(uint64_t first, uint64_t last) const;

    std::vector<uint64_t> sequences() const;
    std::vector<double> latencies_ms() const;  // push -> receive, per received frame
    bool all_sizes(uint32_t width, uint32_t height) const;
    size_t count() const;
    // Frames that carried the motion they were rendered from (Frame::motion, same sequence)
    // and whose weights are TestMotion(sequence)'s.
    size_t with_test_motion() const;

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::map<uint64_t, std::chrono::steady_clock::time_point> pushed_;
    std::vector<uint64_t> sequences_;
    std::vector<double> latencies_ms_;
    std::vector<std::pair<uint32_t, uint32_t>> sizes_;
    std::vector<bool> rgba_ok_;
    size_t with_test_motion_ = 0;
};

// Pushes sequences [first, first + count) keeping at most `window` unanswered; false on timeout.
// Exact: every frame must arrive (a correctness check; see DriveWithin for measurements).
bool DrivePaced(avatar_bridge::DriveSession& session, Recorder& recorder, uint64_t first,
                size_t count, size_t window, std::chrono::milliseconds timeout);

// What DriveWithin managed: frames pushed and received, the rest counted as dropped.
struct PacedRun {
    size_t pushed = 0, received = 0, dropped = 0;
    double seconds = 0;
    bool deadline_hit = false;  // stopped pushing at the deadline
};

// Like DrivePaced, for measurements on a busy machine: a frame counts as answered once it or
// a later one has arrived (the runtime's latest-wins may drop it), a wait that sees nothing
// for `stall` gives the outstanding frames up as dropped and goes on, and nothing is pushed
// after `deadline`. Never waits longer than the deadline plus one stall.
PacedRun DriveWithin(avatar_bridge::DriveSession& session, Recorder& recorder, uint64_t first,
                     size_t count, size_t window, std::chrono::milliseconds stall,
                     std::chrono::steady_clock::time_point deadline);
