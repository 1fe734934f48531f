// Symbol export for the Unreal module build: UnrealBuildTool defines AVATARBRIDGECORE_API
// (DLL export / import); the standalone CMake build leaves it empty.
#pragma once

#if defined(AVATARBRIDGECORE_API)
#define AB_CORE_API AVATARBRIDGECORE_API
#else
#define AB_CORE_API
#endif
