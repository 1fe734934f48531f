#include "RuntimeProcess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace {
constexpr int kStartTimeoutMs = 180000;  // first start imports torch + MediaPipe
std::vector<std::string> g_temp_dirs;

// Every started, not yet reaped runtime: what the atexit handler kills.
std::mutex g_live_mutex;
std::set<RuntimeProcess*>& Live() {
    static auto* live = new std::set<RuntimeProcess*>();  // never destroyed: used at exit
    return *live;
}

void KillAllAtExit() {
    std::vector<RuntimeProcess*> live;
    {
        std::lock_guard<std::mutex> lock(g_live_mutex);
        live.assign(Live().begin(), Live().end());
    }
    for (RuntimeProcess* runtime : live) {
        std::fprintf(stderr, "stopping the runtime (pid %d) this test started\n", int(runtime->pid()));
        runtime->Kill();
    }
}

void Track(RuntimeProcess* runtime, bool live) {
    static std::once_flag registered;
    std::call_once(registered, [] { std::atexit(KillAllAtExit); });
    std::lock_guard<std::mutex> lock(g_live_mutex);
    if (live) Live().insert(runtime);
    else Live().erase(runtime);
}
}  // namespace

RuntimeProcess::RuntimeProcess(std::string executable, std::string data_dir, std::string token)
    : executable_(std::move(executable)), data_dir_(std::move(data_dir)), token_(std::move(token)) {}

RuntimeProcess::~RuntimeProcess() { Stop(); }

bool RuntimeProcess::Start(const std::string& zmq, std::string& error) {
    int out[2];
    if (pipe(out) != 0) {
        error = "pipe failed";
        return false;
    }
    std::vector<std::string> args = {executable_, "serve", "--grpc", "none", "--zmq", zmq,
                                     "--data-dir", data_dir_, "--grace", "1"};
    if (!token_.empty()) {
        args.push_back("--token");
        args.push_back(token_);
    }
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // survives exec: dies with the test process
        if (getppid() != parent) _exit(127);  // the test died before the line above
#endif
        dup2(out[1], STDOUT_FILENO);
        const int log = open((data_dir_ + "/runtime.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log >= 0) dup2(log, STDERR_FILENO);
        close(out[0]);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(out[1]);
    if (pid_ < 0) {
        close(out[0]);
        error = "fork failed";
        return false;
    }
    Track(this, true);
    std::string line;
    pollfd pfd{out[0], POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
    while (line.find('\n') == std::string::npos) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now()).count();
        char buffer[256];
        ssize_t n = 0;
        if (left <= 0 || poll(&pfd, 1, int(left)) <= 0 || (n = read(out[0], buffer, sizeof buffer)) <= 0) {
            close(out[0]);
            error = "avatar-runtime did not print its address; log:\n" + LogTail();
            Kill();
            return false;
        }
        line.append(buffer, size_t(n));
    }
    close(out[0]);  // nothing else goes to stdout
    const auto at = line.find("zmq=");
    if (at == std::string::npos) {
        error = "unexpected first line: " + line;
        Kill();
        return false;
    }
    endpoint_ = line.substr(at + 4, line.find_first_of(" \n", at) - at - 4);
    return true;
}

void RuntimeProcess::Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    Track(this, false);
}

void RuntimeProcess::Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGCONT);  // a paused runtime cannot act on SIGTERM
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            Track(this, false);
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Kill();
}

void RuntimeProcess::Pause() {
    if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RuntimeProcess::Resume() {
    if (pid_ > 0) kill(pid_, SIGCONT);
}

std::string RuntimeProcess::LogTail() const {
    std::ifstream in(data_dir_ + "/runtime.log");
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    std::ostringstream tail;
    for (size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i) tail << lines[i] << "\n";
    return tail.str();
}

std::string MakeTempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/avatar-core-XXXXXX";
    std::vector<char> buffer(tmpl.begin(), tmpl.end());
    buffer.push_back('\0');
    if (!mkdtemp(buffer.data())) return std::string();
    g_temp_dirs.emplace_back(buffer.data());
    return g_temp_dirs.back();
}

void RemoveTempDirs() {
    std::error_code ignored;
    for (const auto& dir : g_temp_dirs) std::filesystem::remove_all(dir, ignored);
    g_temp_dirs.clear();
}
