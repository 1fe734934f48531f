// Drives one avatar from a Live Link subject and shows the rendered stream on a texture.
// Each tick: read the subject's ARKit curves + HeadYaw/HeadPitch/HeadRoll (Live Link Face
// names), push them to the runtime, and upload the newest received frame (latest-wins) into
// OutputTexture (transient, RGBA8). Use OutputTexture in a material on a plane or widget.
// With bPublishToLiveLink, an Avatar Bridge Live Link source publishes the motion the runtime
// rendered as the subject LiveLinkOutputSubject (AvatarLiveLinkSource.h).
#pragma once

#include <memory>

#include "AvatarBridgeCore/DriveSession.h"
#include "Components/ActorComponent.h"
#include "CoreMinimal.h"
#include "LiveLinkTypes.h"

#include "AvatarDriverComponent.generated.h"

class UTexture2D;

UCLASS(ClassGroup = (AvatarBridge), meta = (BlueprintSpawnableComponent))
class AVATARBRIDGE_API UAvatarDriverComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UAvatarDriverComponent();

	/** Avatar to drive (from CreateAvatarFromFile, the CLI or the Python client). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge")
	FString AvatarId;

	/** Live Link subject with ARKit curves (e.g. the Live Link Face app's device). Empty: use SetCurves. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge")
	FLiveLinkSubjectName LiveLinkSubject;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge", meta = (ClampMin = 16, ClampMax = 2048))
	int32 Width = 512;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge", meta = (ClampMin = 16, ClampMax = 2048))
	int32 Height = 512;

	/** Optional: render from this actor's pose relative to the owner (taken at StartDriving);
	 *  none = the runtime's frontal portrait camera. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge")
	TObjectPtr<AActor> CameraActor;

	/** Vertical field of view in degrees; 0 = the runtime's default (12). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge")
	float FieldOfView = 0.f;

	/** One-Euro smoothing on the runtime side. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge")
	bool bSmoothing = true;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge")
	bool bStartOnBeginPlay = true;

	/** Publish the rendered motion through any Avatar Bridge Live Link source (taken at StartDriving). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge|Live Link")
	bool bPublishToLiveLink = true;

	/** Subject name for the Live Link source; None = "Avatar_<AvatarId>". */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Avatar Bridge|Live Link")
	FName LiveLinkOutputSubject;

	/** The rendered stream (straight alpha, row 0 = top). */
	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Transient, Category = "Avatar Bridge")
	TObjectPtr<UTexture2D> OutputTexture;

	/** Opens the drive session (returns at once; see the Start Drive async node to wait for
	 *  the runtime's answer). False if not connected or the options are invalid. */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	bool StartDriving();

	/** Ends the session, waiting up to 0.5 s for the runtime's final status (the Stop Drive
	 *  async node waits on a worker thread instead). */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void StopDriving();

	/** C++: the running session (null when stopped), and detaching it (StopDriving without End). */
	std::shared_ptr<avatar_bridge::DriveSession> GetSession() const { return Session; }
	std::shared_ptr<avatar_bridge::DriveSession> DetachSession();

	/** Curves to send when no Live Link subject is set (ARKit names, HeadYaw/HeadPitch/HeadRoll in radians). */
	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void SetCurves(const TMap<FName, float>& Curves);

	/** "Streaming", "Connecting", "Ended", "Failed: <error>" or "Stopped". */
	UFUNCTION(BlueprintPure, Category = "Avatar Bridge")
	FString GetStatus() const;

	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type Reason) override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction) override;

private:
	std::shared_ptr<avatar_bridge::DriveSession> Session;
	int32 LiveLinkHandle = 0;  // AvatarLiveLinkRegistry handle, 0 = none
	TMap<FName, float> ManualCurves;
	uint64 Sequence = 0;
	bool bReportedFailure = false;
};
