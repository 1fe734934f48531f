"""Keep MediaPipe/TFLite's native start-up log lines off the user's terminal.

MediaPipe's C++ side logs through absl straight to file descriptor 2 while its graphs are
built and first run (`INFO: Created TensorFlow Lite XNNPACK delegate`, `W0000 ...
inference_feedback_manager.cc ...`), and ignores GLOG_minloglevel / TF_CPP_MIN_LOG_LEVEL.
So during those calls fd 2 is pointed at a temporary file; afterwards everything in it
except info and warning lines of that native format is written back to the real stderr
(another thread's message in that window is delayed, not lost; native errors still show).

    with native_logs_quieted():
        graph = build_graph()
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
import threading

# absl/glog ("W0000 00:00:1796320178.357057 4354 file.cc:114] ..."), absl's pre-init notice,
# and TFLite's own logger ("INFO: ..."): info and warning severities only.
NOISE = re.compile(rb"^(?:[IW]\d{4} [\d:.]+\s+\d+ [^\]]+\] "
                   rb"|WARNING: All log messages before absl::InitializeLog\(\) "
                   rb"|INFO: |WARNING: )")

_show = os.environ.get("AVATAR_RUNTIME_NATIVE_LOGS", "") not in ("", "0")
_lock = threading.RLock()


def show_native_logs(show: bool) -> None:
    """Let native log lines through (the CLI's --verbose) or keep them quiet (default)."""
    global _show
    _show = show


def drop_noise(text: bytes) -> bytes:
    """`text` without its native info/warning lines."""
    return b"".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@contextlib.contextmanager
def native_logs_quieted():
    """Run the block with native info/warning lines on fd 2 dropped (see the module doc)."""
    if _show:
        yield
        return
    with _lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            _flush_c_streams()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = drop_noise(sink.read())
            if kept:
                os.write(2, kept)


def _flush_c_streams() -> None:
    """fflush(NULL): native code may hold log text in a C stdio buffer bound for fd 2."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
