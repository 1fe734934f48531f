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
#include "AvatarBridgeCore/Mesh.h"
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
    // MotionFrame -> Live Link Face curves -> MotionFrame (what the Live Link source publishes).
    for (const Vec3& ypr : {Vec3{0.3, -0.2, 0.1}, Vec3{-1.2, 0.7, -0.4}, Vec3{0, 0, 0}}) {
        const Vec3 back_ypr = YawPitchRollFromQuat(QuatFromYawPitchRoll(ypr[0], ypr[1], ypr[2]));
        for (int i = 0; i < 3; ++i) CHECK(Near(back_ypr[i], ypr[i], 1e-9));
    }
    MotionFrame face = TestMotion(17);
    face.has_eye_gaze = true;
    face.eye_gaze = {0.1f, -0.05f, 0.12f, -0.04f};
    const auto curves = LiveLinkFaceCurves(face);
    CHECK(curves.size() == 59 && curves[0].first == "EyeBlinkLeft" && curves[51].first == "TongueOut");
    CHECK(curves[52].first == "HeadYaw" && curves[58].first == "RightEyePitch");
    const MotionFrame again = MotionFromCurves(curves, 17, 0.0);
    for (int i = 0; i < kNumArkit; ++i) CHECK(Near(again.arkit[i], face.arkit[i], 1e-6));
    for (int i = 0; i < 4; ++i) CHECK(Near(again.head_rotation[i], face.head_rotation[i], 1e-5));
    CHECK(again.has_eye_gaze && Near(again.eye_gaze[3], face.eye_gaze[3], 1e-7));
    CHECK(LiveLinkFaceCurves(TestMotion(1)).size() == 55);  // no gaze: no eye angle curves
    // Gaze yaw turns the eye's +Z toward +X (runtime), pitch toward +Y.
    const Quat eye = EyeRotationFromGaze(0.5, 0.0);
    CHECK(Near(eye[1], std::sin(0.25), 1e-12) && Near(eye[3], std::cos(0.25), 1e-12));
    return 0;
}

// SHA-256 test vectors (FIPS 180-2) and the chunk reassembly's refusals.
int TestMeshAssembler(const Args&) {
    CHECK(Sha256Hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(Sha256Hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(Sha256Hex(two_blocks.data(), two_blocks.size()) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    CHECK(Sha256Hex(million.data(), million.size()) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    const std::string body = "0123456789";
    const std::string digest = Sha256Hex(body.data(), body.size());
    auto chunk = [&](const std::string& name, uint64_t offset, size_t size, bool last,
                     uint64_t total = 10, std::string sha = "") {
        MeshChunk c;
        c.file_name = name;
        c.offset = offset;
        c.total_bytes = total;
        c.last = last;
        c.sha256 = last ? (sha.empty() ? digest : sha) : "";
        c.data = reinterpret_cast<const uint8_t*>(body.data()) + offset;
        c.size = size;
        return c;
    };
    {
        MeshAssembler a;  // two files, two chunks each
        CHECK_OK(a.Add(chunk("a.obj", 0, 4, false)));
        CHECK_OK(a.Add(chunk("a.obj", 4, 6, true)));
        CHECK_OK(a.Add(chunk("a.mtl", 0, 5, false)));
        CHECK_OK(a.Add(chunk("a.mtl", 5, 5, true)));
        auto files = a.Finish();
        CHECK_OK(files.status());
        CHECK(files->size() == 2 && (*files)[1].file_name == "a.mtl");
        CHECK(std::string((*files)[0].data.begin(), (*files)[0].data.end()) == body);
    }
    auto refused = [](const Status& s) { return s.code() == ErrorCode::DataLoss; };
    MeshAssembler gap;
    CHECK_OK(gap.Add(chunk("f", 0, 4, false)));
    CHECK(refused(gap.Add(chunk("f", 5, 5, true))));
    MeshAssembler overlap;
    CHECK_OK(overlap.Add(chunk("f", 0, 4, false)));
    CHECK(refused(overlap.Add(chunk("f", 3, 7, true))));
    MeshAssembler short_file;
    CHECK(refused(short_file.Add(chunk("f", 0, 9, true))));
    MeshAssembler long_file;
    CHECK(refused(long_file.Add(chunk("f", 0, 10, true, 9))));
    MeshAssembler changed_total;
    CHECK_OK(changed_total.Add(chunk("f", 0, 4, false)));
    CHECK(refused(changed_total.Add(chunk("f", 4, 6, true, 11))));
    MeshAssembler bad_digest;
    CHECK(refused(bad_digest.Add(chunk("f", 0, 10, true, 10, std::string(64, '0')))));
    MeshAssembler unfinished;
    CHECK_OK(unfinished.Add(chunk("f", 0, 4, false)));
    CHECK(refused(unfinished.Add(chunk("g", 0, 10, true))));
    MeshAssembler truncated;
    CHECK_OK(truncated.Add(chunk("f", 0, 4, false)));
    CHECK(refused(truncated.Finish().status()));
    MeshAssembler repeated;
    CHECK_OK(repeated.Add(chunk("f", 0, 10, true)));
    CHECK(refused(repeated.Add(chunk("f", 0, 10, true))));
    CHECK(refused(MeshAssembler().Finish().status()));
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
    CHECK(recorder.with_test_motion() == 120);  // each frame knows the motion it shows
    MotionFrame rendered;
    CHECK(session.value()->LatestRenderedMotion(rendered) && rendered.sequence == 119);
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

// ExportMesh: chunks reassembled and verified (offset, total_bytes, sha256) at a chunk size
// that splits every file; glb and obj (3 files in order); errors. SolveMotion on the portrait.
int TestExportAndSolve(const Args& args) {
    auto runtime = StartRuntime(args, MakeTempDir());
    auto client = ConnectOrDie(runtime->endpoint());
    const std::vector<uint8_t> portrait = ReadFile(args.portrait);
    auto avatar = client->CreateAvatar(portrait, "astronaut");
    CHECK_OK(avatar.status());

    ExportOptions glb;
    glb.chunk_bytes = 4096;
    auto files = client->ExportMesh(avatar->id, glb);
    CHECK_OK(files.status());
    CHECK(files->size() == 1);
    const MeshFile& mesh = files->front();
    CHECK(mesh.file_name == "avatar-" + avatar->id + ".glb" && mesh.mime_type == "model/gltf-binary");
    CHECK(mesh.data.size() > 100 * 4096);  // many chunks
    CHECK(std::memcmp(mesh.data.data(), "glTF", 4) == 0);
    uint32_t glb_length = 0;  // the GLB header's total length (little-endian, bytes 8..11)
    std::memcpy(&glb_length, mesh.data.data() + 8, 4);
    CHECK(glb_length == mesh.data.size());
    CHECK(mesh.sha256 == Sha256Hex(mesh.data.data(), mesh.data.size()));

    ExportOptions smiling = glb;  // an expression baked in: other bytes, still verified
    smiling.has_motion = true;
    smiling.motion.arkit[ArkitIndex("mouthSmileLeft")] = 1.f;
    auto smile = client->ExportMesh(avatar->id, smiling);
    CHECK_OK(smile.status());
    CHECK(smile->front().sha256 != mesh.sha256);

    ExportOptions obj;
    obj.format = "obj";
    obj.chunk_bytes = 65536;
    auto obj_files = client->ExportMesh(avatar->id, obj);
    CHECK_OK(obj_files.status());
    CHECK(obj_files->size() == 3);
    const std::string stem = "avatar-" + avatar->id;
    CHECK((*obj_files)[0].file_name == stem + ".obj" && (*obj_files)[1].file_name == stem + ".mtl" &&
          (*obj_files)[2].file_name == stem + ".png");
    std::printf("export: glb %zu bytes in %zu chunks of 4096; obj %zu + %zu + %zu bytes\n",
                mesh.data.size(), (mesh.data.size() + 4095) / 4096, (*obj_files)[0].data.size(),
                (*obj_files)[1].data.size(), (*obj_files)[2].data.size());

    auto missing = client->ExportMesh("0000000000000000");
    CHECK(!missing.ok() && missing.status().code() == ErrorCode::NotFound);
    ExportOptions tiny;
    tiny.chunk_bytes = 100;  // below the 1024 minimum
    auto refused = client->ExportMesh(avatar->id, tiny);
    CHECK(!refused.ok() && refused.status().code() == ErrorCode::InvalidArgument);
    CHECK_OK(client->Ping());  // the socket is usable after failed streams

    auto motion = client->SolveMotion(portrait, avatar->id, 7, 1.5);
    CHECK_OK(motion.status());
    CHECK(motion->sequence == 7 && Near(motion->timecode, 1.5));
    double norm = 0;
    for (float q : motion->head_rotation) norm += double(q) * q;
    CHECK(Near(norm, 1.0, 1e-3));
    for (float w : motion->arkit) CHECK(w >= 0.f && w <= 1.f);
    auto garbage = client->SolveMotion({1, 2, 3, 4});
    CHECK(!garbage.ok() && garbage.status().code() == ErrorCode::InvalidArgument);
    return 0;
}

// CalibrateNeutral on the portrait, which smiles with lowered brows: before, the avatar (made
// from it, its expression estimated and taken out) reads an expression on it (smile, jaw,
// brows: how much of each varies with the avatar's measured response); calibrated on it, the
// portrait becomes the rest and reads ~0 on every feature channel, whether the neutral is
// sent as the photo or as its landmarks (the same face, the same answer); ResetNeutral brings
// the first reading back. Errors: unknown avatar, bad image, wrong landmark count.
int TestCalibrateNeutral(const Args& args) {
    auto runtime = StartRuntime(args, MakeTempDir());
    auto client = ConnectOrDie(runtime->endpoint());
    const std::vector<uint8_t> portrait = ReadFile(args.portrait);
    auto avatar = client->CreateAvatar(portrait, "astronaut");
    CHECK_OK(avatar.status());
    const int smile = ArkitIndex("mouthSmileLeft");
    // Channels read from the face's own proportions against its neutral (motion/features.py).
    const char* feature_channels[] = {"eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft",
                                      "mouthSmileRight", "browInnerUp", "browDownLeft", "browDownRight"};

    auto before = client->SolveMotion(portrait, avatar->id);
    CHECK_OK(before.status());
    float expression = 0.0f;
    for (const char* name : feature_channels) expression += before->arkit[ArkitIndex(name)];
    CHECK(expression > 0.3f);

    auto calibrated = client->CalibrateNeutral(avatar->id, portrait);
    CHECK_OK(calibrated.status());
    for (const char* name : feature_channels) CHECK(calibrated->arkit[ArkitIndex(name)] < 0.05f);
    auto after = client->SolveMotion(portrait, avatar->id);
    CHECK_OK(after.status());
    for (int k = 0; k < kNumArkit; ++k) CHECK(Near(after->arkit[k], calibrated->arkit[k], 1e-4));

    FaceLandmarks landmarks;  // the portrait's, detected by the runtime's own face mesh
    std::ifstream in(args.extra.at("landmarks"));
    in >> landmarks.width >> landmarks.height;
    for (float v; in >> v;) landmarks.xyz.push_back(v);
    CHECK(landmarks.xyz.size() == 478 * 3);
    auto from_landmarks = client->CalibrateNeutral(avatar->id, landmarks);
    CHECK_OK(from_landmarks.status());
    for (int k = 0; k < kNumArkit; ++k) CHECK(Near(from_landmarks->arkit[k], calibrated->arkit[k], 1e-3));
    std::printf("calibrate: mouthSmileLeft %.3f before, %.3f calibrated (image), %.3f (landmarks)\n",
                before->arkit[smile], calibrated->arkit[smile], from_landmarks->arkit[smile]);

    CHECK_OK(client->ResetNeutral(avatar->id));
    auto reset = client->SolveMotion(portrait, avatar->id);
    CHECK_OK(reset.status());
    for (int k = 0; k < kNumArkit; ++k) CHECK(Near(reset->arkit[k], before->arkit[k], 1e-4));

    auto missing = client->CalibrateNeutral("0000000000000000", portrait);
    CHECK(!missing.ok() && missing.status().code() == ErrorCode::NotFound);
    CHECK(client->ResetNeutral("0000000000000000").code() == ErrorCode::NotFound);
    auto garbage = client->CalibrateNeutral(avatar->id, std::vector<uint8_t>{1, 2, 3, 4});
    CHECK(!garbage.ok() && garbage.status().code() == ErrorCode::InvalidArgument);
    FaceLandmarks short_landmarks = landmarks;
    short_landmarks.xyz.resize(100 * 3);
    auto refused = client->CalibrateNeutral(avatar->id, short_landmarks);
    CHECK(!refused.ok() && refused.status().code() == ErrorCode::InvalidArgument);
    CHECK_OK(client->Ping());
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
        {"mesh_assembler", TestMeshAssembler}, {"export_solve", TestExportAndSolve},
        {"calibrate_neutral", TestCalibrateNeutral},
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
