// Drives one avatar from a Live Link subject and shows the rendered stream on a texture.
// Each tick: read the subject's ARKit curves + HeadYaw/HeadPitch/HeadRoll (Live Link Face
// names), push them to the runtime, and upload the newest received frame (latest-wins) into
// OutputTexture (transient, RGBA8). Use OutputTexture in a material on a plane or widget.
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

	/** The rendered stream (straight alpha, row 0 = top). */
	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Transient, Category = "Avatar Bridge")
	TObjectPtr<UTexture2D> OutputTexture;

	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	bool StartDriving();

	UFUNCTION(BlueprintCallable, Category = "Avatar Bridge")
	void StopDriving();

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
	std::unique_ptr<avatar_bridge::DriveSession> Session;
	TMap<FName, float> ManualCurves;
	uint64 Sequence = 0;
	bool bReportedFailure = false;
};
