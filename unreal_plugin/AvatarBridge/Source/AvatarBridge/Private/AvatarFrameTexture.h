// Uploads received RGBA frames into a transient UTexture2D.
#pragma once

#include "AvatarBridgeCore/Types.h"
#include "CoreMinimal.h"

class UTexture2D;

namespace AvatarFrameTexture
{
/** `Existing` if it has the frame's size, else a new transient PF_R8G8B8A8 texture. */
UTexture2D* Ensure(UTexture2D* Existing, int32 Width, int32 Height);
/** Hands the pixels to the render thread (no copy on the game thread). */
void Upload(UTexture2D* Texture, avatar_bridge::Frame&& Frame);
}
