// One connection to avatar-runtime per game instance. Blueprint: Connect (non-blocking: a
// worker thread connects, OnConnectionChanged reports Connected or Failed), Disconnect,
// GetConnectionStatus, AddLiveLinkSource; the per-call async nodes (AvatarBridgeAsyncActions.h)
// create avatars, export meshes and start/stop drives. The protocol lives in AvatarBridgeCore.
#pragma once

#include <functional>
#include <memory>

#include "AvatarBridgeCore/DriveSession.h"
#include "CoreMinimal.h"
#include "Subsystems/GameInstanceSubsystem.h"

#include "AvatarBridgeSubsystem.generated.h"

namespace avatar_bridge { class RuntimeClient; }

UENUM(BlueprintType)
enum class EAvatarBridgeConnection : uint8
{
	Disconnected,
	Connecting,
	Connected,
	Failed,
};

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FOnAvatarBridgeConnectionChanged, EAvatarBridgeConnection, Status, const FString&, Error);

UCLASS()
class AVATARBRIDGE_API UAvatarBridgeSubsystem : public UGameInstanceSubsystem
{
	GENERATED_BODY()

public:
	/** Starts connecting on a worker thread and returns at once: the runtime must answer and
	 *  accept the token within TimeoutSeconds. OnConnectionChanged reports Connecting, then
	 *  Connected or Failed (with the error). A newer Connect or a Disconnect supersedes it. */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void Connect(const FString& Endpoint = TEXT("tcp://127.0.0.1:5555"), const FString& Token = TEXT(""),
	             float TimeoutSeconds = 2.0f);

	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void Disconnect();

	UFUNCTION(BlueprintPure, Category = "Avatar Bridge")
	EAvatarBridgeConnection GetConnectionStatus() const { return Status; }

	UFUNCTION(BlueprintPure, Category = "Avatar Bridge")
	bool IsConnected() const { return Status == EAvatarBridgeConnection::Connected && Client != nullptr; }

	/** The error of the last failed Connect ("" if none). */
	UFUNCTION(BlueprintPure, Category = "Avatar Bridge")
	FString GetLastError() const { return LastError; }

	UPROPERTY(BlueprintAssignable, Category = "Avatar Bridge")
	FOnAvatarBridgeConnectionChanged OnConnectionChanged;

	/** Adds an Avatar Bridge Live Link source (packaged builds have no Live Link panel): every
	 *  avatar driven with bPublishToLiveLink becomes a subject. False without Live Link. */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	bool AddLiveLinkSource();

	/** C++: Connect with a callback on the game thread (true, "") or (false, error). */
	void ConnectThen(const FString& Endpoint, const FString& Token, float TimeoutSeconds,
	                 TFunction<void(bool, const FString&)> Done);

	/** C++: the connected client (null unless Connected); worker tasks keep it alive. */
	std::shared_ptr<avatar_bridge::RuntimeClient> GetClient() const { return IsConnected() ? Client : nullptr; }

	/** C++: opens a drive session (nullptr and OutError on failure). Returns at once. */
	std::shared_ptr<avatar_bridge::DriveSession> StartDrive(const avatar_bridge::DriveOptions& Options, FString& OutError);

	virtual void Deinitialize() override;

private:
	void SetStatus(EAvatarBridgeConnection NewStatus, const FString& Error);

	std::shared_ptr<avatar_bridge::RuntimeClient> Client;
	EAvatarBridgeConnection Status = EAvatarBridgeConnection::Disconnected;
	FString LastError;
	uint32 Attempt = 0;  // results of superseded Connects are dropped
};
