// The avatars being driven in this process, for the Live Link source to publish. Driver
// components register their drive session under a subject name and unregister when they
// stop; sources read a snapshot on the game thread. Holds weak references only.
#pragma once

#include <memory>

#include "AvatarBridgeCore/DriveSession.h"
#include "CoreMinimal.h"

namespace AvatarLiveLinkRegistry
{
struct FEntry
{
	FName Subject;
	std::weak_ptr<avatar_bridge::DriveSession> Session;
};

/** Registers `Session` as `Subject`; returns a handle for Unregister. */
int32 Register(FName Subject, std::weak_ptr<avatar_bridge::DriveSession> Session);
void Unregister(int32 Handle);
TArray<FEntry> Snapshot();
}
