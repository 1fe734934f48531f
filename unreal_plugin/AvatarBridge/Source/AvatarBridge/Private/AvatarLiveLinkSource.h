// A Live Link source publishing every avatar driven in this process (UAvatarDriverComponent
// with bPublishToLiveLink) as one subject: the 52 ARKit curves under the Live Link Face names
// ("EyeBlinkLeft" ... "TongueOut"), HeadYaw/HeadPitch/HeadRoll and the four eye angles, and
// with the animation role a skeleton root -> head -> eye.L / eye.R carrying the head and eye
// rotations (Unreal axes, Coordinates.h). The values are the motion the runtime rendered: the
// frame the session pushed whose sequence the newest rendered frame echoes
// (DriveSession::LatestRenderedMotion), so a subject shows what the texture shows.
//
// No thread of its own: the drive sessions receive on theirs; Update() (game thread, each
// Live Link tick) pushes a frame per subject whose rendered motion changed through the
// _AnyThread calls.
#pragma once

#include "AvatarBridgeCore/Types.h"
#include "CoreMinimal.h"
#include "ILiveLinkSource.h"
#include "LiveLinkTypes.h"

class ILiveLinkClient;
class UAvatarLiveLinkSourceSettings;

class FAvatarLiveLinkSource : public ILiveLinkSource
{
public:
	virtual void ReceiveClient(ILiveLinkClient* InClient, FGuid InSourceGuid) override;
	virtual void InitializeSettings(ULiveLinkSourceSettings* Settings) override;
	virtual void Update() override;
	virtual bool IsSourceStillValid() const override { return Client != nullptr; }
	virtual bool RequestSourceShutdown() override;
	virtual FText GetSourceType() const override;
	virtual FText GetSourceMachineName() const override;
	virtual FText GetSourceStatus() const override;
	virtual TSubclassOf<ULiveLinkSourceSettings> GetSettingsClass() const override;
	virtual void OnSettingsChanged(ULiveLinkSourceSettings* Settings, const FPropertyChangedEvent& Event) override;

private:
	struct FPublished
	{
		uint64 Sequence = 0;
		bool bStaticSent = false;
	};

	void PushStatic(const FLiveLinkSubjectKey& Key);
	void PushFrame(const FLiveLinkSubjectKey& Key, const avatar_bridge::MotionFrame& Motion);
	void RemoveAllSubjects();

	ILiveLinkClient* Client = nullptr;
	FGuid SourceGuid;
	TWeakObjectPtr<UAvatarLiveLinkSourceSettings> SettingsObject;
	bool bBones = true;
	FString Prefix;
	TMap<FName, FPublished> Published;  // by subject name (prefix included)
};
