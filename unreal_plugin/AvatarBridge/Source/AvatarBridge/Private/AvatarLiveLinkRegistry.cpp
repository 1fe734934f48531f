#include "AvatarLiveLinkRegistry.h"

#include "Misc/ScopeLock.h"

namespace AvatarLiveLinkRegistry
{
namespace
{
FCriticalSection Mutex;
TMap<int32, FEntry> Entries;
int32 NextHandle = 1;
}

int32 Register(FName Subject, std::weak_ptr<avatar_bridge::DriveSession> Session)
{
	FScopeLock Lock(&Mutex);
	const int32 Handle = NextHandle++;
	Entries.Add(Handle, FEntry{Subject, MoveTemp(Session)});
	return Handle;
}

void Unregister(int32 Handle)
{
	FScopeLock Lock(&Mutex);
	Entries.Remove(Handle);
}

TArray<FEntry> Snapshot()
{
	FScopeLock Lock(&Mutex);
	TArray<FEntry> Out;
	Entries.GenerateValueArray(Out);
	return Out;
}
}
