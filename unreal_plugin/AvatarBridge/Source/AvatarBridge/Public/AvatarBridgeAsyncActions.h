// Per-call async Blueprint nodes: each node is its own call with its own Success / Failure
// pins, so overlapping calls can be told apart. The work runs on a worker thread (the core's
// calls block); the pins fire on the game thread.
//
//   Connect To Avatar Runtime (Endpoint, Token, Timeout)  -> Success / Failure (Error)
//   Create Avatar (ImagePath, Name)                       -> Success (AvatarId) / Failure (Error)
//   Export Avatar Mesh (AvatarId, Format, Directory)      -> Success (file path) / Failure (Error)
//   Start Avatar Drive (Driver, Timeout)                  -> Success / Failure (Error)
//   Stop Avatar Drive (Driver, Timeout)                   -> Success (frame counts) / Failure (Error)
#pragma once

#include "CoreMinimal.h"
#include "Kismet/BlueprintAsyncActionBase.h"

#include "AvatarBridgeAsyncActions.generated.h"

class UAvatarBridgeSubsystem;
class UAvatarDriverComponent;

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FAvatarBridgeCallPin, const FString&, Value, const FString&, Error);

/** Base: Success / Failure pins, finished once on the game thread. */
UCLASS(Abstract)
class AVATARBRIDGE_API UAvatarBridgeAsyncAction : public UBlueprintAsyncActionBase
{
	GENERATED_BODY()

public:
	UPROPERTY(BlueprintAssignable)
	FAvatarBridgeCallPin Success;

	UPROPERTY(BlueprintAssignable)
	FAvatarBridgeCallPin Failure;

protected:
	/** Fires Success (empty Error) or Failure and lets the node be collected. */
	void Finish(bool bOk, const FString& Value, const FString& Error);
	/** Runs `Work` on the thread pool; its (ok, value, error) comes back through Finish. */
	void RunOnWorker(TFunction<void(bool&, FString&, FString&)> Work);
	UAvatarBridgeSubsystem* Subsystem() const;

	TWeakObjectPtr<UObject> WorldContext;
};

UCLASS()
class AVATARBRIDGE_API UAvatarConnectAction : public UAvatarBridgeAsyncAction
{
	GENERATED_BODY()

public:
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge", meta = (BlueprintInternalUseOnly = "true", WorldContext = "WorldContextObject", DisplayName = "Connect To Avatar Runtime"))
	static UAvatarConnectAction* ConnectToRuntime(UObject* WorldContextObject, const FString& Endpoint = TEXT("tcp://127.0.0.1:5555"),
	                                              const FString& Token = TEXT(""), float TimeoutSeconds = 2.0f);
	virtual void Activate() override;

private:
	FString Endpoint, Token;
	float TimeoutSeconds = 2.f;
};

UCLASS()
class AVATARBRIDGE_API UAvatarCreateAction : public UAvatarBridgeAsyncAction
{
	GENERATED_BODY()

public:
	/** Reads a portrait photo (PNG / JPEG) and creates an avatar; Success's Value is its id. */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge", meta = (BlueprintInternalUseOnly = "true", WorldContext = "WorldContextObject", DisplayName = "Create Avatar"))
	static UAvatarCreateAction* CreateAvatar(UObject* WorldContextObject, const FString& ImagePath, const FString& Name);
	virtual void Activate() override;

private:
	FString ImagePath, Name;
};

UCLASS()
class AVATARBRIDGE_API UAvatarExportAction : public UAvatarBridgeAsyncAction
{
	GENERATED_BODY()

public:
	/** Exports the avatar's mesh ("glb", "obj" or "ply"), every file verified by size and
	 *  sha256, into Directory (created if needed); Success's Value is the main file's path
	 *  (the .glb / .obj / .ply), ready for Tools > Import Avatar glTF... */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge", meta = (BlueprintInternalUseOnly = "true", WorldContext = "WorldContextObject", DisplayName = "Export Avatar Mesh"))
	static UAvatarExportAction* ExportMesh(UObject* WorldContextObject, const FString& AvatarId, const FString& Format = TEXT("glb"),
	                                       const FString& Directory = TEXT(""));
	virtual void Activate() override;

private:
	FString AvatarId, Format, Directory;
};

UCLASS()
class AVATARBRIDGE_API UAvatarStartDriveAction : public UAvatarBridgeAsyncAction
{
	GENERATED_BODY()

public:
	/** StartDriving on `Driver`, then waits (on a worker) until the runtime started the session. */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge", meta = (BlueprintInternalUseOnly = "true", DisplayName = "Start Avatar Drive"))
	static UAvatarStartDriveAction* StartDrive(UAvatarDriverComponent* Driver, float TimeoutSeconds = 10.f);
	virtual void Activate() override;

private:
	TWeakObjectPtr<UAvatarDriverComponent> Driver;
	float TimeoutSeconds = 10.f;
};

UCLASS()
class AVATARBRIDGE_API UAvatarStopDriveAction : public UAvatarBridgeAsyncAction
{
	GENERATED_BODY()

public:
	/** Detaches `Driver`'s session and ends it on a worker: Success once the runtime sent its
	 *  final status (Value: "rendered N, dropped M of R received"). */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge", meta = (BlueprintInternalUseOnly = "true", DisplayName = "Stop Avatar Drive"))
	static UAvatarStopDriveAction* StopDrive(UAvatarDriverComponent* Driver, float TimeoutSeconds = 10.f);
	virtual void Activate() override;

private:
	TWeakObjectPtr<UAvatarDriverComponent> Driver;
	float TimeoutSeconds = 10.f;
};
