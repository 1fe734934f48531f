#include "AvatarLiveLinkSource.h"

#include "AvatarBridgeCore/Arkit.h"
#include "AvatarBridgeCore/Coordinates.h"
#include "AvatarBridgeStrings.h"
#include "AvatarLiveLinkRegistry.h"
#include "AvatarLiveLinkSourceSettings.h"
#include "HAL/PlatformProcess.h"
#include "HAL/PlatformTime.h"
#include "ILiveLinkClient.h"
#include "Roles/LiveLinkAnimationRole.h"
#include "Roles/LiveLinkAnimationTypes.h"
#include "Roles/LiveLinkBasicRole.h"
#include "Roles/LiveLinkBasicTypes.h"

#define LOCTEXT_NAMESPACE "AvatarLiveLinkSource"

namespace
{
// Every frame carries the eye angle curves (zero without a gaze): static data names a fixed set.
avatar_bridge::MotionFrame WithGaze(const avatar_bridge::MotionFrame& In)
{
	avatar_bridge::MotionFrame Out = In;
	if (!Out.has_eye_gaze)
	{
		Out.has_eye_gaze = true;
		Out.eye_gaze = {0.f, 0.f, 0.f, 0.f};
	}
	return Out;
}

FQuat ToUnreal(const avatar_bridge::Quat& Q)
{
	const avatar_bridge::Quat U = avatar_bridge::ToUnrealRotation(Q);
	return FQuat(U[0], U[1], U[2], U[3]);
}

// root, head, eye.L, eye.R (the exported glTF's joint names); parents -1, 0, 1, 1.
const TCHAR* const BoneNames[] = {TEXT("root"), TEXT("head"), TEXT("eye.L"), TEXT("eye.R")};
const int32 BoneParents[] = {-1, 0, 1, 1};
}

void FAvatarLiveLinkSource::ReceiveClient(ILiveLinkClient* InClient, FGuid InSourceGuid)
{
	Client = InClient;
	SourceGuid = InSourceGuid;
}

void FAvatarLiveLinkSource::InitializeSettings(ULiveLinkSourceSettings* Settings)
{
	if (UAvatarLiveLinkSourceSettings* Ours = Cast<UAvatarLiveLinkSourceSettings>(Settings))
	{
		SettingsObject = Ours;
		bBones = Ours->bPublishHeadAndEyeBones;
		Prefix = Ours->SubjectPrefix;
	}
}

void FAvatarLiveLinkSource::OnSettingsChanged(ULiveLinkSourceSettings* Settings, const FPropertyChangedEvent& Event)
{
	ILiveLinkSource::OnSettingsChanged(Settings, Event);
	RemoveAllSubjects();  // role or names changed: publish anew
	InitializeSettings(Settings);
}

void FAvatarLiveLinkSource::Update()
{
	if (!Client)
	{
		return;
	}
	TSet<FName> Live;
	for (const AvatarLiveLinkRegistry::FEntry& Entry : AvatarLiveLinkRegistry::Snapshot())
	{
		const std::shared_ptr<avatar_bridge::DriveSession> Session = Entry.Session.lock();
		avatar_bridge::MotionFrame Motion;
		if (!Session || !Session->LatestRenderedMotion(Motion))
		{
			continue;
		}
		const FName Subject(*(Prefix + Entry.Subject.ToString()));
		Live.Add(Subject);
		FPublished& State = Published.FindOrAdd(Subject);
		const FLiveLinkSubjectKey Key(SourceGuid, Subject);
		if (!State.bStaticSent)
		{
			PushStatic(Key);
			State.bStaticSent = true;
		}
		else if (State.Sequence == Motion.sequence)
		{
			continue;  // nothing newer was rendered
		}
		State.Sequence = Motion.sequence;
		PushFrame(Key, Motion);
	}
	for (auto It = Published.CreateIterator(); It; ++It)
	{
		if (!Live.Contains(It->Key))
		{
			Client->RemoveSubject_AnyThread(FLiveLinkSubjectKey(SourceGuid, It->Key));
			It.RemoveCurrent();
		}
	}
}

void FAvatarLiveLinkSource::PushStatic(const FLiveLinkSubjectKey& Key)
{
	TArray<FName> Curves;
	for (const auto& Curve : avatar_bridge::LiveLinkFaceCurves(WithGaze(avatar_bridge::MotionFrame())))
	{
		Curves.Add(FName(UTF8_TO_TCHAR(Curve.first.c_str())));
	}
	if (bBones)
	{
		FLiveLinkStaticDataStruct Static(FLiveLinkSkeletonStaticData::StaticStruct());
		FLiveLinkSkeletonStaticData& Skeleton = *Static.Cast<FLiveLinkSkeletonStaticData>();
		Skeleton.PropertyNames = Curves;
		for (int32 Index = 0; Index < UE_ARRAY_COUNT(BoneNames); ++Index)
		{
			Skeleton.BoneNames.Add(FName(BoneNames[Index]));
			Skeleton.BoneParents.Add(BoneParents[Index]);
		}
		Client->PushSubjectStaticData_AnyThread(Key, ULiveLinkAnimationRole::StaticClass(), MoveTemp(Static));
	}
	else
	{
		FLiveLinkStaticDataStruct Static(FLiveLinkBaseStaticData::StaticStruct());
		Static.Cast<FLiveLinkBaseStaticData>()->PropertyNames = Curves;
		Client->PushSubjectStaticData_AnyThread(Key, ULiveLinkBasicRole::StaticClass(), MoveTemp(Static));
	}
}

void FAvatarLiveLinkSource::PushFrame(const FLiveLinkSubjectKey& Key, const avatar_bridge::MotionFrame& Motion)
{
	const avatar_bridge::MotionFrame Full = WithGaze(Motion);
	TArray<float> Values;
	for (const auto& Curve : avatar_bridge::LiveLinkFaceCurves(Full))
	{
		Values.Add(Curve.second);
	}
	if (!bBones)
	{
		FLiveLinkFrameDataStruct Frame(FLiveLinkBaseFrameData::StaticStruct());
		FLiveLinkBaseFrameData& Data = *Frame.Cast<FLiveLinkBaseFrameData>();
		Data.WorldTime = FPlatformTime::Seconds();
		Data.PropertyValues = MoveTemp(Values);
		Client->PushSubjectFrameData_AnyThread(Key, MoveTemp(Frame));
		return;
	}
	FLiveLinkFrameDataStruct Frame(FLiveLinkAnimationFrameData::StaticStruct());
	FLiveLinkAnimationFrameData& Data = *Frame.Cast<FLiveLinkAnimationFrameData>();
	Data.WorldTime = FPlatformTime::Seconds();
	Data.PropertyValues = MoveTemp(Values);
	const auto& R = Full.head_rotation;
	const avatar_bridge::Vec3 T = avatar_bridge::ToUnrealPosition(
		{Full.head_translation[0], Full.head_translation[1], Full.head_translation[2]});
	Data.Transforms.Add(FTransform::Identity);
	Data.Transforms.Add(FTransform(ToUnreal({R[0], R[1], R[2], R[3]}), FVector(T[0], T[1], T[2])));
	Data.Transforms.Add(FTransform(ToUnreal(avatar_bridge::EyeRotationFromGaze(Full.eye_gaze[0], Full.eye_gaze[1]))));
	Data.Transforms.Add(FTransform(ToUnreal(avatar_bridge::EyeRotationFromGaze(Full.eye_gaze[2], Full.eye_gaze[3]))));
	Client->PushSubjectFrameData_AnyThread(Key, MoveTemp(Frame));
}

void FAvatarLiveLinkSource::RemoveAllSubjects()
{
	if (Client)
	{
		for (const TPair<FName, FPublished>& Entry : Published)
		{
			Client->RemoveSubject_AnyThread(FLiveLinkSubjectKey(SourceGuid, Entry.Key));
		}
	}
	Published.Reset();
}

bool FAvatarLiveLinkSource::RequestSourceShutdown()
{
	Published.Reset();  // the client drops the source's subjects itself
	Client = nullptr;
	return true;
}

FText FAvatarLiveLinkSource::GetSourceType() const { return LOCTEXT("Type", "Avatar Bridge"); }

FText FAvatarLiveLinkSource::GetSourceMachineName() const { return FText::FromString(FPlatformProcess::ComputerName()); }

FText FAvatarLiveLinkSource::GetSourceStatus() const
{
	return Published.Num() ? FText::Format(LOCTEXT("Active", "Active ({0} avatars)"), Published.Num())
	                       : LOCTEXT("Waiting", "Waiting for a driven avatar");
}

TSubclassOf<ULiveLinkSourceSettings> FAvatarLiveLinkSource::GetSettingsClass() const
{
	return UAvatarLiveLinkSourceSettings::StaticClass();
}

#undef LOCTEXT_NAMESPACE
