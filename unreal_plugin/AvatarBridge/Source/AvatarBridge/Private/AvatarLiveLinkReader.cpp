#include "AvatarLiveLinkReader.h"

#include "Features/IModularFeatures.h"
#include "ILiveLinkClient.h"
#include "Roles/LiveLinkBasicRole.h"
#include "Roles/LiveLinkBasicTypes.h"

bool AvatarLiveLink::ReadCurves(const FLiveLinkSubjectName& Subject, std::vector<std::pair<std::string, float>>& Out)
{
	IModularFeatures& Features = IModularFeatures::Get();
	if (!Features.IsModularFeatureAvailable(ILiveLinkClient::ModularFeatureName))
	{
		return false;
	}
	ILiveLinkClient& Client = Features.GetModularFeature<ILiveLinkClient>(ILiveLinkClient::ModularFeatureName);
	FLiveLinkSubjectFrameData Data;
	if (!Client.EvaluateFrame_AnyThread(Subject, ULiveLinkBasicRole::StaticClass(), Data))
	{
		return false;
	}
	const FLiveLinkBaseStaticData* Static = Data.StaticData.Cast<FLiveLinkBaseStaticData>();
	const FLiveLinkBaseFrameData* Frame = Data.FrameData.Cast<FLiveLinkBaseFrameData>();
	if (!Static || !Frame)
	{
		return false;
	}
	const int32 Count = FMath::Min(Static->PropertyNames.Num(), Frame->PropertyValues.Num());
	Out.clear();
	Out.reserve(Count);
	for (int32 Index = 0; Index < Count; ++Index)
	{
		Out.emplace_back(TCHAR_TO_UTF8(*Static->PropertyNames[Index].ToString()), Frame->PropertyValues[Index]);
	}
	return true;
}
