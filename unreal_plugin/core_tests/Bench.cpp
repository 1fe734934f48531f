// Frames per second and latency of the C++ client driving a real runtime on loopback.
//   core_bench --runtime EXE --portrait PNG [--frames 150] [--sizes 256,512] [--window 2]
//              [--deadline-s 120] [--max-drop-percent 5]
// fps: frames received per second of wall time with `window` frames in flight (pipelined);
// latency: push of a motion frame -> its RGBA frame received (window 1, one at a time).
// Each measured run has a deadline; frames the runtime dropped (latest-wins on a busy
// machine) or that never came are counted and reported, and fail the bench only beyond
// --max-drop-percent. Nothing waits for an exact frame count.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "AvatarBridgeCore/RuntimeClient.h"
#include "RuntimeProcess.h"
#include "TestSupport.h"

using namespace avatar_bridge;
using namespace std::chrono_literals;

namespace {

double Percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

constexpr std::chrono::milliseconds kStall{3000};  // nothing arrives this long: give up the frames

struct Limits {
    std::chrono::seconds deadline{120};  // per measured run
    double max_drop_percent = 5.0;
};

struct Run {
    double fps = 0, p50 = 0, p95 = 0, server_ms = 0;
    size_t pushed = 0, dropped = 0;
    bool deadline_hit = false;
};

PacedRun Paced(DriveSession& session, Recorder& recorder, uint64_t first, size_t count,
               size_t window, std::chrono::seconds deadline) {
    return DriveWithin(session, recorder, first, count, window, kStall,
                       std::chrono::steady_clock::now() + deadline);
}

Run Measure(RuntimeClient& client, const std::string& avatar, uint32_t size, size_t frames,
            size_t window, const Limits& limits) {
    Run run;
    {   // throughput, pipelined
        auto session = client.StartDrive({avatar, size, size});
        CHECK_OK(session.status());
        Recorder recorder;
        recorder.Attach(*session.value());
        CHECK_OK(session.value()->WaitStarted(30s));
        Paced(*session.value(), recorder, 0, 10, window, limits.deadline);  // warm-up
        const PacedRun r = Paced(*session.value(), recorder, 10, frames, window, limits.deadline);
        run.fps = r.seconds > 0 ? double(r.received) / r.seconds : 0.0;
        run.pushed += r.pushed;
        run.dropped += r.dropped;
        run.deadline_hit |= r.deadline_hit;
        CHECK_OK(session.value()->End());
    }
    {   // latency, one frame at a time
        auto session = client.StartDrive({avatar, size, size});
        CHECK_OK(session.status());
        Recorder recorder;
        recorder.Attach(*session.value());
        CHECK_OK(session.value()->WaitStarted(30s));
        Paced(*session.value(), recorder, 0, 10, 1, limits.deadline);  // warm-up
        const size_t base = recorder.latencies_ms().size();
        const PacedRun r = Paced(*session.value(), recorder, 10, frames / 2, 1, limits.deadline);
        const auto all = recorder.latencies_ms();
        const std::vector<double> latencies(all.begin() + long(base), all.end());
        run.p50 = Percentile(latencies, 0.5);
        run.p95 = Percentile(latencies, 0.95);
        run.pushed += r.pushed;
        run.dropped += r.dropped;
        run.deadline_hit |= r.deadline_hit;
        Frame last;
        if (session.value()->TakeLatestFrame(last)) run.server_ms = last.render_ms + last.encode_ms;
        CHECK_OK(session.value()->End());
    }
    return run;
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = ParseArgs(argc, argv, 1);
    const size_t frames = args.extra.count("frames") ? std::stoul(args.extra.at("frames")) : 150;
    const size_t window = args.extra.count("window") ? std::stoul(args.extra.at("window")) : 2;
    Limits limits;
    if (args.extra.count("deadline-s")) limits.deadline = std::chrono::seconds(std::stol(args.extra.at("deadline-s")));
    if (args.extra.count("max-drop-percent")) limits.max_drop_percent = std::stod(args.extra.at("max-drop-percent"));
    std::vector<uint32_t> sizes;
    std::stringstream list(args.extra.count("sizes") ? args.extra.at("sizes") : "256,512");
    for (std::string item; std::getline(list, item, ',');) sizes.push_back(uint32_t(std::stoul(item)));

    struct Cleanup {
        ~Cleanup() { RemoveTempDirs(); }
    } cleanup;  // declared first: runs after the runtime below has stopped
    RuntimeProcess runtime(args.runtime, MakeTempDir());
    std::string error;
    if (!runtime.Start("tcp://127.0.0.1:0", error)) {
        std::fprintf(stderr, "cannot start the runtime: %s\n", error.c_str());
        return 1;
    }
    auto client = RuntimeClient::Connect({runtime.endpoint(), ""});
    CHECK_OK(client.status());
    auto avatar = client.value()->CreateAvatar(ReadFile(args.portrait));
    CHECK_OK(avatar.status());
    std::printf("C++ client (AvatarBridgeCore) -> avatar-runtime over ZeroMQ, loopback, raw RGBA\n");
    std::printf("%-6s %10s %14s %14s %16s %14s\n", "size", "fps", "latency p50", "latency p95",
                "server ms/frame", "dropped");
    bool within_budget = true;
    for (uint32_t size : sizes) {
        const Run r = Measure(*client.value(), avatar->id, size, frames, window, limits);
        const double percent = r.pushed ? 100.0 * double(r.dropped) / double(r.pushed) : 100.0;
        std::printf("%-6u %10.1f %11.1f ms %11.1f ms %13.1f ms %6zu/%zu%s\n", size, r.fps, r.p50, r.p95,
                    r.server_ms, r.dropped, r.pushed, r.deadline_hit ? " (deadline hit)" : "");
        if (percent > limits.max_drop_percent || r.pushed == 0) {
            std::fprintf(stderr, "%u px: %zu of %zu frames dropped (%.1f %%), more than the %.1f %% allowed\n",
                         size, r.dropped, r.pushed, percent, limits.max_drop_percent);
            within_budget = false;
        }
    }
    return within_budget ? 0 : 1;
}
