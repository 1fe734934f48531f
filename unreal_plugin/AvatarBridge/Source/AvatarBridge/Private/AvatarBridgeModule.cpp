#include "AvatarBridgeStrings.h"
#include "Modules/ModuleManager.h"

DEFINE_LOG_CATEGORY(LogAvatarBridge);

IMPLEMENT_MODULE(FDefaultModuleImpl, AvatarBridge)
