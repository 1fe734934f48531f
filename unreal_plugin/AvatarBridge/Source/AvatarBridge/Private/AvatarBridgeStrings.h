// FString <-> UTF-8 std::string at the core's boundary.
#pragma once

#include <string>

#include "CoreMinimal.h"

namespace AvatarBridgeStrings
{
inline std::string ToUtf8(const FString& In) { return std::string(TCHAR_TO_UTF8(*In)); }
inline FString FromUtf8(const std::string& In) { return FString(UTF8_TO_TCHAR(In.c_str())); }
}

DECLARE_LOG_CATEGORY_EXTERN(LogAvatarBridge, Log, All);
