// Unreal module entry point only (not part of the CMake build): the core has no engine logic.
#include "Modules/ModuleManager.h"

IMPLEMENT_MODULE(FDefaultModuleImpl, AvatarBridgeCore)
