// Settings of the Avatar Bridge Live Link source (shown in the Live Link panel's details).
#pragma once

#include "CoreMinimal.h"
#include "LiveLinkSourceSettings.h"

#include "AvatarLiveLinkSourceSettings.generated.h"

UCLASS()
class AVATARBRIDGE_API UAvatarLiveLinkSourceSettings : public ULiveLinkSourceSettings
{
	GENERATED_BODY()

public:
	/** Animation role with a 4-bone skeleton (root, head, eye.L, eye.R) and the curves; off: the
	 *  basic role with the curves only (as the Live Link Face app's subjects). */
	UPROPERTY(EditAnywhere, Category = "Avatar Bridge")
	bool bPublishHeadAndEyeBones = true;

	/** Put in front of every subject name (e.g. "Runtime_"), to tell sources apart. */
	UPROPERTY(EditAnywhere, Category = "Avatar Bridge")
	FString SubjectPrefix;
};
