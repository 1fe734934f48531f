// Reads a Live Link subject's named curves (basic role: property names + values).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "CoreMinimal.h"
#include "LiveLinkTypes.h"

namespace AvatarLiveLink
{
/** Curves of `Subject` this frame; false if Live Link or the subject is not available. */
bool ReadCurves(const FLiveLinkSubjectName& Subject, std::vector<std::pair<std::string, float>>& Out);
}
