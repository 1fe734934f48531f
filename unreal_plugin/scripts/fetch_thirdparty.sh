#!/usr/bin/env bash
# Fills the AvatarBridgeLibs ThirdParty module (Source/ThirdParty/AvatarBridgeLibs) for Linux
# or Mac: the layout AvatarBridgeLibs.Build.cs expects.
#
#   include/zmq.h zmq_utils.h          libzmq 4.3 (from the source that libzmq.a is built from)
#   include/zmq.hpp zmq_addon.hpp      cppzmq 4.x (header-only)
#   include/msgpack.hpp msgpack/...    msgpack-c C++ 4.x (header-only, used with MSGPACK_NO_BOOST)
#   lib/<Linux|Mac>/libzmq.a           static, position-independent, no libsodium (no CURVE),
#                                      no other dependency than pthread
#   VERSIONS.txt                       what was used, from where, with digests
#
# Linux (Debian/Ubuntu): headers from the installed packages cppzmq-dev and libmsgpack-cxx-dev;
# libzmq's source from `apt-get source zeromq3` (checked by apt against the signed archive, and
# against the digest pinned below), built with CMake. No root needed (apt runs on a private
# state directory). Unreal links Linux targets against its bundled clang + libc++: pass
# --ue-root so libzmq is compiled with that toolchain; without it the host compiler is used
# (right for the standalone CMake build of the core, not for an Unreal Linux target).
#
# Mac (Homebrew): headers from `brew install cppzmq msgpack-cxx`; libzmq's source from
# `brew fetch --build-from-source zeromq`, built with CMake as a universal (arm64 + x86_64)
# static library for macOS $MACOSX_DEPLOYMENT_TARGET (default 12.0).
#
# Win64: see fetch_thirdparty.ps1 (vcpkg).
#
# usage: fetch_thirdparty.sh [--out DIR] [--zmq-source TARBALL] [--ue-root DIR] [--jobs N]
#                            [--headers-from DIR] [--keep-build]
# exit: 0 done; 2 usage; 3 a source or package is missing (the message says which).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/../AvatarBridge/Source/ThirdParty/AvatarBridgeLibs"
ZMQ_SOURCE=""
UE_ROOT=""
JOBS="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
HEADERS_FROM=""
KEEP_BUILD=0
ZMQ_VERSION="4.3.4"
# sha256 of zeromq-4.3.4 as Debian ships it (zeromq3_4.3.4.orig.tar.gz) and as upstream
# released it (zeromq-4.3.4.tar.gz, which Homebrew fetches).
ZMQ_SHA256_DEBIAN="0ff5a531c9ffaf0dfdc7dc78d13d1383088f454896d252934c429b2554d10559"
ZMQ_SHA256_UPSTREAM="c593001a89f5a85dd2ddf564805deb860e02471171b3f204944857336295c3e5"

die() { echo "fetch_thirdparty: $1" >&2; exit "${2:-3}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --zmq-source) ZMQ_SOURCE="$2"; shift 2 ;;
        --ue-root) UE_ROOT="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --headers-from) HEADERS_FROM="$2"; shift 2 ;;
        --keep-build) KEEP_BUILD=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" 2 ;;
    esac
done

case "$(uname -s)" in
    Linux) PLATFORM=Linux ;;
    Darwin) PLATFORM=Mac ;;
    *) die "run fetch_thirdparty.ps1 on Windows" 2 ;;
esac
command -v cmake >/dev/null || die "cmake is required"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/avatar-bridge-libs.XXXXXX")"
cleanup() { [ "$KEEP_BUILD" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi; }

# ---- 1. libzmq's source ---------------------------------------------------------------
fetch_zmq_debian() {
    local apt="$WORK/apt"
    mkdir -p "$apt/lists/partial" "$apt/parts" "$apt/dl"
    # The deb-src line of the machine's own Debian/Ubuntu release.
    . /etc/os-release
    local uri="http://deb.debian.org/debian" suite="${VERSION_CODENAME:-bookworm}" comps="main"
    if [ "${ID:-}" = ubuntu ]; then uri="http://archive.ubuntu.com/ubuntu"; comps="universe"; fi
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ "${ID:-}" = ubuntu ] && keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: %s\n' \
        "$uri" "$suite" "$comps" "$keyring" > "$apt/parts/src.sources"
    local opts=(-q -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/parts"
                -o "Dir::State::Lists=$apt/lists" -o "Debug::NoLocking=1")
    apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 || die "apt-get update (deb-src) failed: $(tail -2 "$apt/update.log")"
    (cd "$apt/dl" && apt-get "${opts[@]}" source --download-only zeromq3 >"$apt/source.log" 2>&1) \
        || die "apt-get source zeromq3 failed: $(tail -2 "$apt/source.log")"
    ZMQ_SOURCE="$(ls "$apt"/dl/zeromq3_*.orig.tar.gz | head -1)"
    ZMQ_FROM="apt-get source zeromq3 ($uri $suite)"
}
fetch_zmq_brew() {
    brew fetch --build-from-source zeromq >/dev/null || die "brew fetch --build-from-source zeromq failed"
    ZMQ_SOURCE="$(brew --cache --build-from-source zeromq)"
    ZMQ_FROM="brew fetch --build-from-source zeromq"
}
if [ -n "$ZMQ_SOURCE" ]; then
    ZMQ_FROM="$ZMQ_SOURCE"
elif [ "$PLATFORM" = Linux ]; then
    command -v apt-get >/dev/null || die "no apt-get: pass --zmq-source zeromq-$ZMQ_VERSION.tar.gz"
    fetch_zmq_debian
else
    fetch_zmq_brew
fi
[ -f "$ZMQ_SOURCE" ] || die "libzmq source $ZMQ_SOURCE not found"
ZMQ_SHA="$(sha256 "$ZMQ_SOURCE")"
[ "$ZMQ_SHA" = "$ZMQ_SHA256_DEBIAN" ] || [ "$ZMQ_SHA" = "$ZMQ_SHA256_UPSTREAM" ] \
    || die "$ZMQ_SOURCE: sha256 $ZMQ_SHA is not libzmq $ZMQ_VERSION's"

# ---- 2. build libzmq (static, PIC, no external dependency) ------------------------------
mkdir -p "$WORK/src"
tar xzf "$ZMQ_SOURCE" -C "$WORK/src" --strip-components=1
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED=OFF -DBUILD_STATIC=ON -DBUILD_TESTS=OFF
            -DWITH_PERF_TOOL=OFF -DWITH_DOCS=OFF -DENABLE_CPACK=OFF -DENABLE_DRAFTS=OFF
            -DWITH_LIBSODIUM=OFF -DENABLE_CURVE=OFF -DWITH_LIBBSD=OFF -DWITH_TLS=OFF -DWITH_NSS=OFF
            -DCMAKE_POSITION_INDEPENDENT_CODE=ON
            # One translation unit: about half the build time; libzmq compiles that way.
            -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=0
            "-DCMAKE_INSTALL_PREFIX=$WORK/install")
if [ "$PLATFORM" = Mac ]; then
    CMAKE_ARGS+=("-DCMAKE_OSX_ARCHITECTURES=arm64;x86_64"
                 "-DCMAKE_OSX_DEPLOYMENT_TARGET=${MACOSX_DEPLOYMENT_TARGET:-12.0}")
fi
COMPILER="host $(c++ --version 2>/dev/null | head -1)"
if [ -n "$UE_ROOT" ]; then
    # UE's Linux toolchain: clang from the host SDK, libc++ headers from the engine.
    SDK="$(ls -d "$UE_ROOT"/Engine/Extras/ThirdPartyNotUE/SDKs/HostLinux/Linux_x64/*/x86_64-unknown-linux-gnu 2>/dev/null | tail -1)"
    LIBCXX="$UE_ROOT/Engine/Source/ThirdParty/Unix/LibCxx/include/c++/v1"
    [ -x "$SDK/bin/clang++" ] && [ -d "$LIBCXX" ] || die "no UE Linux toolchain under $UE_ROOT (Engine/Extras/ThirdPartyNotUE/SDKs/HostLinux, Engine/Source/ThirdParty/Unix/LibCxx)"
    CMAKE_ARGS+=("-DCMAKE_C_COMPILER=$SDK/bin/clang" "-DCMAKE_CXX_COMPILER=$SDK/bin/clang++"
                 "-DCMAKE_SYSROOT=$SDK" "-DCMAKE_CXX_FLAGS=-nostdinc++ -isystem $LIBCXX")
    COMPILER="UE toolchain $SDK with libc++ $LIBCXX"
fi
cmake -S "$WORK/src" -B "$WORK/build" "${CMAKE_ARGS[@]}" >"$WORK/configure.log" 2>&1 \
    || die "configuring libzmq failed: $(tail -5 "$WORK/configure.log")"
cmake --build "$WORK/build" -j "$JOBS" --target libzmq-static >"$WORK/build.log" 2>&1 \
    || die "building libzmq failed: $(tail -5 "$WORK/build.log")"
mkdir -p "$OUT/include" "$OUT/lib/$PLATFORM"
cp "$WORK/build/lib/libzmq.a" "$OUT/lib/$PLATFORM/libzmq.a"
cp "$WORK/src/include/zmq.h" "$WORK/src/include/zmq_utils.h" "$OUT/include/"

# ---- 3. header-only cppzmq and msgpack-c -------------------------------------------------
if [ -z "$HEADERS_FROM" ]; then
    if [ "$PLATFORM" = Linux ]; then
        for pkg in cppzmq-dev libmsgpack-cxx-dev; do
            dpkg -s "$pkg" >/dev/null 2>&1 || die "package $pkg is not installed: sudo apt-get install cppzmq-dev libmsgpack-cxx-dev (or pass --headers-from DIR)"
        done
        HEADERS_FROM=/usr/include
        CPPZMQ_VERSION="$(dpkg-query -W -f='${Version}' cppzmq-dev)"
        MSGPACK_VERSION="$(dpkg-query -W -f='${Version}' libmsgpack-cxx-dev)"
    else
        brew list cppzmq >/dev/null 2>&1 && brew list msgpack-cxx >/dev/null 2>&1 \
            || die "brew install cppzmq msgpack-cxx (or pass --headers-from DIR)"
        HEADERS_FROM="$(brew --prefix)/include"
        CPPZMQ_VERSION="$(brew list --versions cppzmq)"
        MSGPACK_VERSION="$(brew list --versions msgpack-cxx)"
    fi
fi
for f in zmq.hpp zmq_addon.hpp msgpack.hpp msgpack; do
    [ -e "$HEADERS_FROM/$f" ] || die "$HEADERS_FROM/$f not found"
done
cp "$HEADERS_FROM/zmq.hpp" "$HEADERS_FROM/zmq_addon.hpp" "$HEADERS_FROM/msgpack.hpp" "$OUT/include/"
rm -rf "$OUT/include/msgpack"
cp -R "$HEADERS_FROM/msgpack" "$OUT/include/msgpack"

cat > "$OUT/VERSIONS.txt" <<INFO
platform: $PLATFORM
libzmq: $ZMQ_VERSION from $ZMQ_FROM, sha256 $ZMQ_SHA
libzmq build: static, PIC, no libsodium / CURVE, unity build; compiler: $COMPILER
libzmq.a sha256: $(sha256 "$OUT/lib/$PLATFORM/libzmq.a")
cppzmq: ${CPPZMQ_VERSION:-from $HEADERS_FROM}
msgpack-c (C++): ${MSGPACK_VERSION:-from $HEADERS_FROM}
INFO
echo "AvatarBridgeLibs ($PLATFORM) in $OUT"
