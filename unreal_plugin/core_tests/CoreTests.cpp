// ctest cases for AvatarBridgeCore. Each case is one process:
//   core_tests <case> --runtime <avatar-runtime> --portrait <png>
// The runtime cases start a real `avatar-runtime serve` on loopback.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <thread>

#include "AvatarBridgeCore/Arkit.h"
#include "AvatarBridgeCore/Coordinates.h"
#include "AvatarBridgeCore/RuntimeClient.h"
#include "RuntimeProcess.h"
#include "TestSupport.h"

using namespace avatar_bridge;
using namespace std::chrono_literals;

namespace {

bool Near(double a, double b, double eps = 1e-9) { return std::fabs(a - b) < eps; }

std::unique_ptr<RuntimeProcess> StartRuntime(const Args& args, const std::string& data_dir,
                                             const std::string& token = "",
                                             const std::string& zmq = "tcp://127.0.0.1:0") {
    auto runtime = std::make_unique<RuntimeProcess>(args.runtime, data_dir, token);
    std::string error;
    if (!runtime->Start(zmq, error)) {
        std::fprintf(stderr, "cannot start the runtime: %s\n", error.c_str());
        std::exit(1);
    }
    return runtime;
}

std::unique_ptr<RuntimeClient> ConnectOrDie(const std::string& endpoint, const std::string& token = "") {
    auto client = RuntimeClient::Connect({endpoint, token});
    CHECK_OK(client.status());
    return std::move(client.value());
}

// ---- no runtime needed ---------------------------------------------------------------
int TestCoordinates(const Args&) {
    // Axes: runtime face direction +Z is Unreal forward +X; up +Y is +Z; subject's left +X is -Y.
    const Vec3 fwd = ToUnrealPosition({0, 0, 1});
    CHECK(Near(fwd[0], 100) && Near(fwd[1], 0) && Near(fwd[2], 0));
    const Vec3 left = ToUnrealPosition({1, 0, 0});
    CHECK(Near(left[1], -100));
    const Vec3 up = ToUnrealPosition({0, 1, 0});
    CHECK(Near(up[2], 100));
    const Vec3 back = ToRuntimePosition(ToUnrealPosition({0.1, -0.2, 0.3}));
    CHECK(Near(back[0], 0.1) && Near(back[1], -0.2) && Near(back[2], 0.3));
    // Runtime yaw +a (face turns to the subject's left) == Unreal rotation about Z by -a.
    const double a = 0.4;
    const Quat ue = ToUnrealRotation(QuatFromYawPitchRoll(a, 0, 0));
    CHECK(Near(ue[0], 0, 1e-12) && Near(ue[1], 0, 1e-12));
    CHECK(Near(ue[2], -std::sin(a / 2)) && Near(ue[3], std::cos(a / 2)));
    const Quat q = QuatFromYawPitchRoll(0.3, -0.2, 0.1);
    const Quat rt = ToRuntimeRotation(ToUnrealRotation(q));
    for (int i = 0; i < 4; ++i) CHECK(Near(rt[i], q[i], 1e-12));
    // An Unreal camera 50 cm in front of the head looking back at it (yaw 180) is the
    // runtime's frontal camera: at +Z 0.5 m, looking down -Z, up +Y.
    const auto c2w = CameraToWorldFromUnreal({{50, 0, 0}, {0, 0, 1, 0}});
    const double expected[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0.5, 0, 0, 0, 1};
    for (int i = 0; i < 16; ++i) CHECK(Near(c2w[i], expected[i], 1e-9));
    // Curves -> MotionFrame: names case-insensitive, weights clamped, head angles -> quat.
    const MotionFrame m = MotionFromCurves({{"JawOpen", 0.7f}, {"eyeblinkleft", 2.f}, {"HeadYaw", float(a)},
                                            {"Unknown", 1.f}}, 3, 0.1);
    CHECK(Near(m.arkit[ArkitIndex("jawOpen")], 0.7, 1e-6) && m.arkit[0] == 1.f);
    CHECK(Near(m.head_rotation[1], std::sin(a / 2), 1e-6) && !m.has_eye_gaze && m.sequence == 3);
    CHECK(ArkitIndex("tongueOut") == 51 && ArkitIndex("nope") == -1);
    return 0;
}

int TestUnreachable(const Args&) {
    ClientOptions options{"tcp://127.0.0.1:9", ""};  // discard port: nothing listens
    options.call_timeout = 300ms;
    auto client = RuntimeClient::Connect(options);
    CHECK(!client.ok() && client.status().code() == ErrorCode::Unavailable);
    return 0;
}

// ---- against a runtime ---------------------------------------------------------------
int TestCreateAndDrive(const Args& args) {
    auto runtime = StartRuntime(args, MakeTempDir());
    auto client = ConnectOrDie(runtime->endpoint());
    auto avatar = client->CreateAvatar(ReadFile(args.portrait), "astronaut");
    CHECK_OK(avatar.status());
    CHECK(avatar->id.size() == 16 && avatar->name == "astronaut");
    auto bad = client->CreateAvatar({1, 2, 3, 4});
    CHECK(!bad.ok() && bad.status().code() == ErrorCode::InvalidArgument);

    const uint32_t width = 320, height = 240;  // not square: width and height must not swap
    auto session = client->StartDrive({avatar->id, width, height});
    CHECK_OK(session.status());
    Recorder recorder;
    recorder.Attach(*session.value());
    CHECK_OK(session.value()->WaitStarted(30s));
    CHECK(DrivePaced(*session.value(), recorder, 0, 120, 2, 30s));
    CHECK_OK(session.value()->End());

    const auto sequences = recorder.sequences();
    CHECK(sequences.size() == 120);
    for (size_t i = 0; i < sequences.size(); ++i) CHECK(sequences[i] == i);
    CHECK(recorder.all_sizes(width, height));
    Frame latest;
    CHECK(session.value()->TakeLatestFrame(latest));
    CHECK(latest.sequence == 119 && !session.value()->TakeLatestFrame(latest));
    size_t opaque = 0;
    for (size_t i = 3; i < latest.rgba.size(); i += 4) opaque += latest.rgba[i] > 0;
    CHECK(opaque > width * height / 20);  // the head covers part of the image
    const DriveStats stats = session.value()->Stats();
    CHECK(stats.frames_sent == 120 && stats.server_rendered == 120 && stats.server_dropped == 0);
    CHECK(session.value()->State() == DriveState::Ended);
    CHECK(session.value()->PushMotion(TestMotion(0)).code() == ErrorCode::FailedPrecondition);

    auto missing = client->StartDrive({"0000000000000000", 64, 64});
    CHECK_OK(missing.status());
    const Status started = missing.value()->WaitStarted(10s);
    CHECK(started.code() == ErrorCode::NotFound);
    CHECK(missing.value()->State() == DriveState::Failed);
    return 0;
}

int TestBadToken(const Args& args) {
    auto runtime = StartRuntime(args, MakeTempDir(), "s3cret-token");
    auto wrong = RuntimeClient::Connect({runtime->endpoint(), "wrong"});
    CHECK(!wrong.ok() && wrong.status().code() == ErrorCode::Unauthenticated);
    auto none = RuntimeClient::Connect({runtime->endpoint(), ""});
    CHECK(!none.ok() && none.status().code() == ErrorCode::Unauthenticated);
    auto right = ConnectOrDie(runtime->endpoint(), "s3cret-token");
    CHECK_OK(right->Ping());
    return 0;
}

int TestRestart(const Args& args) {
    const std::string data_dir = MakeTempDir();
    auto runtime = StartRuntime(args, data_dir);
    const std::string endpoint = runtime->endpoint();
    ClientOptions options{endpoint, ""};
    options.call_timeout = 2s;
    auto client = RuntimeClient::Connect(options);
    CHECK_OK(client.status());
    auto avatar = client.value()->CreateAvatar(ReadFile(args.portrait));
    CHECK_OK(avatar.status());
    auto session = client.value()->StartDrive({avatar->id, 128, 128});
    CHECK_OK(session.status());
    DriveSession& drive = *session.value();
    Recorder recorder;
    recorder.Attach(drive);
    CHECK_OK(drive.WaitStarted(30s));
    CHECK(DrivePaced(drive, recorder, 0, 10, 2, 30s));

    runtime->Kill();  // a crash: no goodbye to the client
    auto restarted = StartRuntime(args, data_dir, "", endpoint);  // same port, same store
    CHECK(restarted->endpoint() == endpoint);

    // Keep streaming as a game would; frames must flow again without any call from us.
    uint64_t sequence = 1000;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!recorder.WaitForSequenceAbove(999, 20ms)) {
        CHECK(std::chrono::steady_clock::now() < deadline);
        CHECK_OK(drive.PushMotion(TestMotion(sequence++)));
    }
    CHECK(drive.Stats().reconnects >= 1 && drive.State() == DriveState::Streaming);
    CHECK_OK(drive.End());
    // Unary calls reach the new process too (the first may time out on the old socket).
    Status ping = client.value()->Ping();
    if (!ping.ok()) ping = client.value()->Ping();
    CHECK_OK(ping);
    std::printf("reconnected after restart: %llu reconnect(s), %zu frames received\n",
                (unsigned long long)drive.Stats().reconnects, recorder.count());
    return 0;
}

// A CreateAvatar is running on the runtime when it is killed (SIGKILL) or hung (SIGSTOP):
// the call must fail Unavailable within 2 s, well before its 120 s create timeout, because
// the ZMTP heartbeats / socket monitor notice. Then the client reaches a new runtime.
int TestLiveness(const Args& args, bool hang) {
    const std::string data_dir = MakeTempDir();
    auto runtime = StartRuntime(args, data_dir);
    auto client = ConnectOrDie(runtime->endpoint());  // connected: the heartbeats are running
    CHECK(client->options().create_timeout >= 60s);
    auto pending = std::async(std::launch::async,
                              [&] { return client->CreateAvatar(ReadFile(args.portrait)); });
    std::this_thread::sleep_for(300ms);  // the request is on the runtime (a create takes ~1 s+)
    CHECK(pending.wait_for(0s) == std::future_status::timeout);
    const auto hit = std::chrono::steady_clock::now();
    if (hang) runtime->Pause();
    else runtime->Kill();
    CHECK(pending.wait_for(5s) == std::future_status::ready);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - hit).count();
    const auto result = pending.get();
    std::printf("%s: CreateAvatar failed after %.0f ms: %s\n", hang ? "SIGSTOP" : "SIGKILL", ms,
                result.status().ToString().c_str());
    CHECK(!result.ok() && result.status().code() == ErrorCode::Unavailable);
    CHECK(result.status().message().find("lost the connection") != std::string::npos);
    // Heartbeats bound a hang by the next PING (<= 500 ms) + the 1500 ms timeout.
    CHECK(ms < (hang ? 2150.0 : 500.0));
    runtime->Stop();
    auto fresh = StartRuntime(args, data_dir, "", runtime->endpoint());  // same port
    CHECK_OK(client->Ping());
    return 0;
}

bool Alive(pid_t pid) {
    if (kill(pid, 0) != 0) return errno != ESRCH;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string skip, state;
    return !(stat >> skip >> skip >> state) || state != "Z";  // a zombie has exited
}

// A test process that starts a runtime and then fails a CHECK (std::exit) or aborts must
// not leave the runtime running. The failing test runs in a forked child; this process
// checks that the runtime the child started is gone soon after the child ended.
int TestNoOrphan(const Args& args, bool abort_instead) {
    const std::string data_dir = MakeTempDir();
    int fds[2];
    CHECK(pipe(fds) == 0);
    const pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(fds[0]);
        auto runtime = StartRuntime(args, data_dir);
        const long pid = runtime->pid();
        if (write(fds[1], &pid, sizeof pid) != sizeof pid) _exit(3);
        close(fds[1]);
        if (abort_instead) std::abort();
        const bool deliberately_failing = false;
        CHECK(deliberately_failing);
        _exit(0);
    }
    close(fds[1]);
    long pid = 0;
    const bool got = read(fds[0], &pid, sizeof pid) == sizeof pid;
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    const auto ended = std::chrono::steady_clock::now();
    CHECK(got && pid > 1);
    if (abort_instead) CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    else CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    while (Alive(pid_t(pid))) {
        if (std::chrono::steady_clock::now() - ended > 10s) {
            kill(pid_t(pid), SIGKILL);  // clean up, then fail
            std::fprintf(stderr, "the runtime (pid %ld) outlived the failed test\n", pid);
            return 1;
        }
        std::this_thread::sleep_for(20ms);
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ended).count();
    std::printf("%s: the runtime (pid %ld) was gone %.0f ms after the test process ended\n",
                abort_instead ? "abort" : "failed CHECK", pid, ms);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::map<std::string, std::function<int(const Args&)>> cases = {
        {"coordinates", TestCoordinates}, {"unreachable", TestUnreachable},
        {"create_drive", TestCreateAndDrive}, {"bad_token", TestBadToken},
        {"restart", TestRestart},
        {"liveness_kill", [](const Args& a) { return TestLiveness(a, false); }},
        {"liveness_hang", [](const Args& a) { return TestLiveness(a, true); }},
        {"no_orphan_check", [](const Args& a) { return TestNoOrphan(a, false); }},
        {"no_orphan_abort", [](const Args& a) { return TestNoOrphan(a, true); }},
    };
    if (argc < 2 || !cases.count(argv[1])) {
        std::fprintf(stderr, "usage: core_tests <case> --runtime EXE --portrait PNG; cases:");
        for (const auto& c : cases) std::fprintf(stderr, " %s", c.first.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    const int rc = cases.at(argv[1])(ParseArgs(argc, argv, 2));
    if (rc == 0) {
        RemoveTempDirs();  // the runtimes are stopped by now (their destructors ran)
        std::printf("%s: passed\n", argv[1]);
    }
    return rc;
}
