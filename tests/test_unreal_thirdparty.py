"""unreal_plugin/scripts/fetch_thirdparty.sh fills the AvatarBridgeLibs layout that
AvatarBridgeLibs.Build.cs expects, here on Linux: libzmq's source from `apt-get source
zeromq3` (digest pinned), built static with CMake; cppzmq and msgpack-c headers from the
installed Debian packages. The result must be self-contained: a program built from only
`include/` and `lib/Linux/libzmq.a` (plus pthread) runs a cppzmq round trip and a msgpack-c
round trip, and does not load a shared libzmq. Skipped without apt-get, cmake, the Debian
header packages, or the Debian source archive (no network).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "unreal_plugin" / "scripts" / "fetch_thirdparty.sh"
BUILD_CS = ROOT / "unreal_plugin" / "AvatarBridge" / "Source" / "ThirdParty" / "AvatarBridgeLibs" / "AvatarBridgeLibs.Build.cs"

PROGRAM = r"""
#include <cstdio>
#include <string>
#include <zmq.hpp>
#include <msgpack.hpp>

int main() {
    int major, minor, patch;
    zmq_version(&major, &minor, &patch);
    zmq::context_t context(1);
    zmq::socket_t a(context, zmq::socket_type::pair), b(context, zmq::socket_type::pair);
    a.bind("inproc://check");
    b.connect("inproc://check");
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> pk(buffer);
    pk.pack_map(1);
    pk.pack(std::string("kind"));
    pk.pack(std::string("Health"));
    a.send(zmq::buffer(buffer.data(), buffer.size()), zmq::send_flags::none);
    zmq::message_t message;
    if (!b.recv(message)) return 1;
    msgpack::object_handle handle = msgpack::unpack(static_cast<const char*>(message.data()), message.size());
    const msgpack::object& map = handle.get();
    if (map.type != msgpack::type::MAP || map.via.map.size != 1) return 2;
    std::printf("zmq %d.%d.%d curve=%d %s\n", major, minor, patch, zmq_has("curve"),
                map.via.map.ptr[0].val.as<std::string>().c_str());
    return 0;
}
"""


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Linux only (Mac/Win64 paths need brew / vcpkg)"
    for tool in ("apt-get", "cmake", "c++", "dpkg"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    for pkg in ("cppzmq-dev", "libmsgpack-cxx-dev"):
        if subprocess.run(["dpkg", "-s", pkg], capture_output=True).returncode != 0:
            return f"{pkg} not installed (scripts/setup.sh installs it)"
    return None


def test_build_cs_names_the_layout():
    text = BUILD_CS.read_text()
    assert "ModuleType.External" in text
    for part in ('"include"', '"lib"', '"libzmq.a"', '"libzmq.lib"', "ZMQ_STATIC", "MSGPACK_NO_BOOST"):
        assert part in text, part


@pytest.mark.slow
def test_fetch_thirdparty_linux_layout(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "AvatarBridgeLibs"
    started = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--jobs", "2"],
                          capture_output=True, text=True, timeout=240)
    seconds = time.monotonic() - started
    if proc.returncode == 3 and "apt-get" in proc.stderr and "failed" in proc.stderr:
        pytest.skip(f"Debian source archive not reachable: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    include = out / "include"
    for header in ("zmq.h", "zmq_utils.h", "zmq.hpp", "zmq_addon.hpp", "msgpack.hpp",
                   "msgpack/v1/object.hpp"):
        assert (include / header).is_file(), header
    lib = out / "lib" / "Linux" / "libzmq.a"
    assert lib.is_file() and lib.read_bytes()[:8] == b"!<arch>\n"
    versions = (out / "VERSIONS.txt").read_text()
    assert "libzmq: 4.3.4" in versions and "sha256" in versions and "cppzmq: 4." in versions
    # No dependency beyond libc/pthread: no libsodium, gssapi, pgm or norm symbols wanted.
    undefined = subprocess.run(["nm", "-u", str(lib)], capture_output=True, text=True).stdout
    assert not re.search(r"\b(sodium_|crypto_box|gss_|pgm_|NormCreate)", undefined)

    source = tmp_path / "check.cpp"
    source.write_text(PROGRAM)
    exe = tmp_path / "check"
    build = subprocess.run(["c++", "-std=c++17", "-DZMQ_STATIC", "-DMSGPACK_NO_BOOST", "-isystem",
                            str(include), str(source), str(lib), "-pthread", "-o", str(exe)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10)
    assert run.returncode == 0 and run.stdout.strip() == "zmq 4.3.4 curve=0 Health", run.stdout + run.stderr
    ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
    assert "libzmq" not in ldd
    print(f"fetch_thirdparty.sh: {seconds:.1f} s; libzmq.a {lib.stat().st_size} bytes")
