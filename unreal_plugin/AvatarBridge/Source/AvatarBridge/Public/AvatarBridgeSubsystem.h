// One connection to avatar-runtime per game instance. Blueprint: Connect, CreateAvatarFromFile
// (asynchronous, answers through OnAvatarCreated), GetLastError. Components start their drive
// sessions through it. The protocol itself lives in AvatarBridgeCore.
#pragma once

#include <memory>

#include "AvatarBridgeCore/DriveSession.h"
#include "CoreMinimal.h"
#include "Subsystems/GameInstanceSubsystem.h"

#include "AvatarBridgeSubsystem.generated.h"

namespace avatar_bridge { class RuntimeClient; }

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FOnAvatarCreated, const FString&, AvatarId, const FString&, Error);

UCLASS()
class AVATARBRIDGE_API UAvatarBridgeSubsystem : public UGameInstanceSubsystem
{
	GENERATED_BODY()

public:
	/** Connects and checks the runtime accepts the token (blocks up to TimeoutSeconds). */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	bool Connect(const FString& Endpoint = TEXT("tcp://127.0.0.1:5555"), const FString& Token = TEXT(""),
	             float TimeoutSeconds = 2.0f);

	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void Disconnect();

	UFUNCTION(BlueprintPure, Category = "Avatar Bridge")
	bool IsConnected() const;

	/** The last error of a call on this subsystem ("" if none). */
	UFUNCTION(BlueprintPure, Category = "Avatar Bridge")
	FString GetLastError() const { return LastError; }

	/** Reads a portrait photo (PNG / JPEG) and creates an avatar on a worker thread; the
	 *  result arrives on the game thread through OnAvatarCreated (AvatarId or Error). */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void CreateAvatarFromFile(const FString& ImagePath, const FString& Name);

	UPROPERTY(BlueprintAssignable, Category = "Avatar Bridge")
	FOnAvatarCreated OnAvatarCreated;

	/** C++: opens a drive session (nullptr and OutError on failure). */
	std::unique_ptr<avatar_bridge::DriveSession> StartDrive(const avatar_bridge::DriveOptions& Options, FString& OutError);

	virtual void Deinitialize() override;

private:
	std::shared_ptr<avatar_bridge::RuntimeClient> Client;  // shared: worker tasks keep it alive
	FString LastError;
};
