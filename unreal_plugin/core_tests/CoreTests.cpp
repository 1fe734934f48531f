// ctest cases for AvatarBridgeCore. Each case is one process:
//   core_tests <case> --runtime <avatar-runtime> --portrait <png>
// The runtime cases start a real `avatar-runtime serve` on loopback.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
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

}  // namespace

int main(int argc, char** argv) {
    const std::map<std::string, std::function<int(const Args&)>> cases = {
        {"coordinates", TestCoordinates}, {"unreachable", TestUnreachable},
        {"create_drive", TestCreateAndDrive}, {"bad_token", TestBadToken},
        {"restart", TestRestart},
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
