#include "AvatarDriverComponent.h"

#include "AvatarBridgeCore/Arkit.h"
#include "AvatarBridgeCore/Coordinates.h"
#include "AvatarBridgeStrings.h"
#include "AvatarBridgeSubsystem.h"
#include "AvatarFrameTexture.h"
#include "AvatarLiveLinkReader.h"
#include "AvatarLiveLinkRegistry.h"
#include "Engine/GameInstance.h"
#include "Engine/Texture2D.h"
#include "Engine/World.h"
#include "GameFramework/Actor.h"

using namespace AvatarBridgeStrings;

namespace
{
// The camera actor's pose relative to the avatar (the owner), as the runtime's c2w.
std::vector<double> CameraRelativeTo(const AActor& Camera, const AActor& Avatar)
{
	const FTransform Relative = Camera.GetActorTransform().GetRelativeTransform(Avatar.GetActorTransform());
	const FVector P = Relative.GetLocation();
	const FQuat Q = Relative.GetRotation();
	const auto C2W = avatar_bridge::CameraToWorldFromUnreal({{P.X, P.Y, P.Z}, {Q.X, Q.Y, Q.Z, Q.W}});
	return std::vector<double>(C2W.begin(), C2W.end());
}
}

UAvatarDriverComponent::UAvatarDriverComponent()
{
	PrimaryComponentTick.bCanEverTick = true;
}

void UAvatarDriverComponent::BeginPlay()
{
	Super::BeginPlay();
	if (bStartOnBeginPlay)
	{
		StartDriving();
	}
}

void UAvatarDriverComponent::EndPlay(const EEndPlayReason::Type Reason)
{
	StopDriving();
	Super::EndPlay(Reason);
}

bool UAvatarDriverComponent::StartDriving()
{
	UGameInstance* GameInstance = GetWorld() ? GetWorld()->GetGameInstance() : nullptr;
	UAvatarBridgeSubsystem* Bridge = GameInstance ? GameInstance->GetSubsystem<UAvatarBridgeSubsystem>() : nullptr;
	if (!Bridge)
	{
		return false;
	}
	avatar_bridge::DriveOptions Options;
	Options.avatar_id = ToUtf8(AvatarId);
	Options.width = uint32(Width);
	Options.height = uint32(Height);
	Options.fov_y_deg = FieldOfView;
	Options.smoothing = bSmoothing;
	if (CameraActor && GetOwner())
	{
		Options.c2w = CameraRelativeTo(*CameraActor, *GetOwner());
	}
	StopDriving();
	FString Error;
	Session = Bridge->StartDrive(Options, Error);
	if (!Session)
	{
		UE_LOG(LogAvatarBridge, Warning, TEXT("%s: cannot drive %s: %s"), *GetNameSafe(GetOwner()), *AvatarId, *Error);
		return false;
	}
	OutputTexture = AvatarFrameTexture::Ensure(OutputTexture, Width, Height);
	bReportedFailure = false;
	if (bPublishToLiveLink)
	{
		const FName Subject = LiveLinkOutputSubject.IsNone() ? FName(*(TEXT("Avatar_") + AvatarId)) : LiveLinkOutputSubject;
		LiveLinkHandle = AvatarLiveLinkRegistry::Register(Subject, Session);
	}
	return true;
}

std::shared_ptr<avatar_bridge::DriveSession> UAvatarDriverComponent::DetachSession()
{
	if (LiveLinkHandle)
	{
		AvatarLiveLinkRegistry::Unregister(LiveLinkHandle);
		LiveLinkHandle = 0;
	}
	return std::move(Session);
}

void UAvatarDriverComponent::StopDriving()
{
	if (std::shared_ptr<avatar_bridge::DriveSession> Ended = DetachSession())
	{
		Ended->End(std::chrono::milliseconds(500));
	}
}

void UAvatarDriverComponent::SetCurves(const TMap<FName, float>& Curves)
{
	ManualCurves = Curves;
}

FString UAvatarDriverComponent::GetStatus() const
{
	if (!Session)
	{
		return TEXT("Stopped");
	}
	switch (Session->State())
	{
	case avatar_bridge::DriveState::Connecting: return TEXT("Connecting");
	case avatar_bridge::DriveState::Streaming: return TEXT("Streaming");
	case avatar_bridge::DriveState::Ended: return TEXT("Ended");
	default: return TEXT("Failed: ") + FromUtf8(Session->LastError().ToString());
	}
}

void UAvatarDriverComponent::TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	if (!Session)
	{
		return;
	}
	std::vector<std::pair<std::string, float>> Curves;
	const bool bFromLiveLink = !LiveLinkSubject.IsNone() && AvatarLiveLink::ReadCurves(LiveLinkSubject, Curves);
	if (!bFromLiveLink)
	{
		for (const TPair<FName, float>& Curve : ManualCurves)
		{
			Curves.emplace_back(ToUtf8(Curve.Key.ToString()), Curve.Value);
		}
	}
	if (!Curves.empty())
	{
		Session->PushMotion(avatar_bridge::MotionFromCurves(Curves, Sequence++, GetWorld()->GetTimeSeconds()));
	}
	avatar_bridge::Frame Frame;
	if (Session->TakeLatestFrame(Frame))
	{
		OutputTexture = AvatarFrameTexture::Ensure(OutputTexture, int32(Frame.width), int32(Frame.height));
		AvatarFrameTexture::Upload(OutputTexture, MoveTemp(Frame));
	}
	if (Session->State() == avatar_bridge::DriveState::Failed && !bReportedFailure)
	{
		bReportedFailure = true;
		UE_LOG(LogAvatarBridge, Warning, TEXT("%s: %s"), *GetNameSafe(GetOwner()), *GetStatus());
	}
}
