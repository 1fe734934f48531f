// Test helper: an `avatar-runtime serve` child process on loopback, its ZeroMQ endpoint
// parsed from the first stdout line ("zmq=tcp://127.0.0.1:40124").
//
// A runtime never outlives the test that started it: destructors stop it; a failed CHECK
// (std::exit) stops every live one from an atexit handler; and on Linux the child asks the
// kernel to SIGKILL it when the test process dies any other way (abort, crash, a ctest
// timeout's SIGKILL), via PR_SET_PDEATHSIG.
#pragma once

#include <sys/types.h>

#include <string>

class RuntimeProcess {
public:
    // `zmq` may name a port ("tcp://127.0.0.1:0" picks a free one); `token` may be empty.
    RuntimeProcess(std::string executable, std::string data_dir, std::string token = "");
    ~RuntimeProcess();

    // Starts the server and waits for its address line; false (and `error`) if it fails.
    bool Start(const std::string& zmq, std::string& error);
    // SIGKILL (a crash) and reap.
    void Kill();
    // SIGTERM, then SIGKILL after a few seconds, and reap (a stopped process is continued first).
    void Stop();
    // SIGSTOP / SIGCONT: a hung runtime (its sockets stay open, nothing answers).
    void Pause();
    void Resume();

    const std::string& endpoint() const { return endpoint_; }
    pid_t pid() const { return pid_; }
    std::string LogTail() const;  // the last lines of the server's stderr

private:
    std::string executable_, data_dir_, token_, endpoint_;
    pid_t pid_ = -1;
};

// A fresh directory under $TMPDIR (or /tmp); RemoveTempDirs() deletes all of them (called on
// success, so a failing test leaves its runtime.log behind).
std::string MakeTempDir();
void RemoveTempDirs();
