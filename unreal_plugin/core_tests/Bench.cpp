// Frames per second and latency of the C++ client driving a real runtime on loopback.
//   core_bench --runtime EXE --portrait PNG [--frames 150] [--sizes 256,512] [--window 2]
// fps: frames received per second of wall time with `window` frames in flight (pipelined);
// latency: push of a motion frame -> its RGBA frame received (window 1, one at a time).
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

struct Run {
    double fps = 0, p50 = 0, p95 = 0, server_ms = 0;
};

Run Measure(RuntimeClient& client, const std::string& avatar, uint32_t size, size_t frames,
            size_t window) {
    Run run;
    {   // throughput, pipelined
        auto session = client.StartDrive({avatar, size, size});
        CHECK_OK(session.status());
        Recorder recorder;
        recorder.Attach(*session.value());
        CHECK_OK(session.value()->WaitStarted(30s));
        CHECK(DrivePaced(*session.value(), recorder, 0, 10, window, 60s));  // warm-up
        const auto t0 = std::chrono::steady_clock::now();
        CHECK(DrivePaced(*session.value(), recorder, 10, frames, window, 120s));
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        run.fps = double(frames) / s;
        CHECK_OK(session.value()->End());
    }
    {   // latency, one frame at a time
        auto session = client.StartDrive({avatar, size, size});
        CHECK_OK(session.status());
        Recorder recorder;
        recorder.Attach(*session.value());
        CHECK_OK(session.value()->WaitStarted(30s));
        CHECK(DrivePaced(*session.value(), recorder, 0, 10, 1, 60s));  // warm-up
        const size_t measured = frames / 2;
        CHECK(DrivePaced(*session.value(), recorder, 10, measured, 1, 120s));
        const auto all = recorder.latencies_ms();
        const std::vector<double> latencies(all.end() - long(measured), all.end());
        run.p50 = Percentile(latencies, 0.5);
        run.p95 = Percentile(latencies, 0.95);
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
    std::printf("%-6s %10s %14s %14s %16s\n", "size", "fps", "latency p50", "latency p95", "server ms/frame");
    for (uint32_t size : sizes) {
        const Run r = Measure(*client.value(), avatar->id, size, frames, window);
        std::printf("%-6u %10.1f %11.1f ms %11.1f ms %13.1f ms\n", size, r.fps, r.p50, r.p95, r.server_ms);
    }
    return 0;
}
