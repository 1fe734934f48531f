#include "AvatarLiveLinkSourceFactory.h"

#include "AvatarLiveLinkSource.h"

#define LOCTEXT_NAMESPACE "AvatarLiveLinkSourceFactory"

FText UAvatarLiveLinkSourceFactory::GetSourceDisplayName() const
{
	return LOCTEXT("Name", "Avatar Bridge");
}

FText UAvatarLiveLinkSourceFactory::GetSourceTooltip() const
{
	return LOCTEXT("Tip", "Publishes every avatar driven by an Avatar Driver component (ARKit curves, head and eyes) as a subject");
}

TSharedPtr<ILiveLinkSource> UAvatarLiveLinkSourceFactory::CreateSource(const FString& ConnectionString) const
{
	return MakeShared<FAvatarLiveLinkSource>();
}

#undef LOCTEXT_NAMESPACE
