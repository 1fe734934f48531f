# Fills the AvatarBridgeLibs ThirdParty module for Win64 from vcpkg (the layout
# AvatarBridgeLibs.Build.cs expects):
#
#   include\zmq.h zmq_utils.h zmq.hpp zmq_addon.hpp msgpack.hpp msgpack\...
#   lib\Win64\libzmq.lib     static libzmq, dynamic CRT (/MD) as Unreal builds, ZMQ_STATIC
#   VERSIONS.txt
#
# What Win64 needs: Visual Studio 2022 with "Desktop development with C++" (the same one Unreal
# uses), git, and vcpkg (https://github.com/microsoft/vcpkg: clone, then bootstrap-vcpkg.bat).
# The triplet x64-windows-static-md is static libraries linked against the DLL CRT (/MD), which
# is what Unreal's modules use; x64-windows (DLLs) or x64-windows-static (/MT) do not fit.
# The vcpkg ports: zeromq (libzmq, built without libsodium unless its "sodium" feature is
# asked for), cppzmq and msgpack (msgpack-c; header-only for C++ with MSGPACK_NO_BOOST).
#
#   powershell -ExecutionPolicy Bypass -File fetch_thirdparty.ps1 -Vcpkg C:\vcpkg [-Out DIR]
param(
    [Parameter(Mandatory = $true)][string]$Vcpkg,
    [string]$Out = (Join-Path $PSScriptRoot "..\AvatarBridge\Source\ThirdParty\AvatarBridgeLibs"),
    [string]$Triplet = "x64-windows-static-md"
)
$ErrorActionPreference = "Stop"

$exe = Join-Path $Vcpkg "vcpkg.exe"
if (-not (Test-Path $exe)) { throw "no vcpkg.exe in $Vcpkg (git clone https://github.com/microsoft/vcpkg; .\bootstrap-vcpkg.bat)" }
& $exe install "zeromq:$Triplet" "cppzmq:$Triplet" "msgpack:$Triplet"
if ($LASTEXITCODE -ne 0) { throw "vcpkg install failed ($LASTEXITCODE)" }

$installed = Join-Path $Vcpkg "installed\$Triplet"
$inc = Join-Path $Out "include"
$lib = Join-Path $Out "lib\Win64"
New-Item -ItemType Directory -Force -Path $inc, $lib | Out-Null
foreach ($f in "zmq.h", "zmq_utils.h", "zmq.hpp", "zmq_addon.hpp", "msgpack.hpp") {
    Copy-Item -Force (Join-Path $installed "include\$f") $inc
}
if (Test-Path (Join-Path $inc "msgpack")) { Remove-Item -Recurse -Force (Join-Path $inc "msgpack") }
Copy-Item -Recurse -Force (Join-Path $installed "include\msgpack") (Join-Path $inc "msgpack")

# vcpkg names the release library after the toolset, e.g. libzmq-mt-s-4_3_5.lib.
$zmq = Get-ChildItem (Join-Path $installed "lib") -Filter "libzmq*.lib" | Select-Object -First 1
if (-not $zmq) { throw "no libzmq*.lib in $installed\lib" }
Copy-Item -Force $zmq.FullName (Join-Path $lib "libzmq.lib")

$versions = & $exe list "zeromq:$Triplet" "cppzmq:$Triplet" "msgpack:$Triplet"
$digest = (Get-FileHash -Algorithm SHA256 (Join-Path $lib "libzmq.lib")).Hash.ToLower()
@("platform: Win64", "vcpkg triplet: $Triplet", "libzmq.lib from: $($zmq.Name)",
  "libzmq.lib sha256: $digest") + $versions | Set-Content (Join-Path $Out "VERSIONS.txt")
Write-Host "AvatarBridgeLibs (Win64) in $Out"
