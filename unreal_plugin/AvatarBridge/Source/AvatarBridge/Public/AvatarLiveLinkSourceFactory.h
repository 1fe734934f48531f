// Live Link panel: "+ Source > Avatar Bridge". Also creates the source at runtime from a
// connection string (any string; the source has no connection of its own).
#pragma once

#include "CoreMinimal.h"
#include "LiveLinkSourceFactory.h"

#include "AvatarLiveLinkSourceFactory.generated.h"

UCLASS()
class AVATARBRIDGE_API UAvatarLiveLinkSourceFactory : public ULiveLinkSourceFactory
{
	GENERATED_BODY()

public:
	virtual FText GetSourceDisplayName() const override;
	virtual FText GetSourceTooltip() const override;
	virtual EMenuType GetMenuType() const override { return EMenuType::MenuEntry; }
	virtual TSharedPtr<ILiveLinkSource> CreateSource(const FString& ConnectionString) const override;
};
