#include "AvatarBridgeSubsystem.h"

#include "Async/Async.h"
#include "AvatarBridgeCore/RuntimeClient.h"
#include "AvatarBridgeStrings.h"
#include "AvatarLiveLinkSource.h"
#include "Features/IModularFeatures.h"
#include "ILiveLinkClient.h"

using namespace AvatarBridgeStrings;

void UAvatarBridgeSubsystem::Connect(const FString& Endpoint, const FString& Token, float TimeoutSeconds)
{
	ConnectThen(Endpoint, Token, TimeoutSeconds, nullptr);
}

void UAvatarBridgeSubsystem::ConnectThen(const FString& Endpoint, const FString& Token, float TimeoutSeconds,
                                         TFunction<void(bool, const FString&)> Done)
{
	Client.reset();
	const uint32 ThisAttempt = ++Attempt;
	SetStatus(EAvatarBridgeConnection::Connecting, FString());

	avatar_bridge::ClientOptions Options;
	Options.endpoint = ToUtf8(Endpoint);
	Options.token = ToUtf8(Token);
	Options.call_timeout = std::chrono::milliseconds(FMath::Max(100, int32(TimeoutSeconds * 1000.f)));
	TWeakObjectPtr<UAvatarBridgeSubsystem> Weak(this);
	Async(EAsyncExecution::ThreadPool, [Options, Weak, ThisAttempt, Endpoint, Done = MoveTemp(Done)]() mutable
	{
		auto Result = avatar_bridge::RuntimeClient::Connect(Options);
		std::shared_ptr<avatar_bridge::RuntimeClient> Connected;
		FString Error;
		if (Result.ok())
		{
			Connected = std::move(Result.value());
		}
		else
		{
			Error = FromUtf8(Result.status().ToString());
		}
		AsyncTask(ENamedThreads::GameThread, [Weak, ThisAttempt, Endpoint, Connected, Error, Done = MoveTemp(Done)]()
		{
			UAvatarBridgeSubsystem* Self = Weak.Get();
			const bool bCurrent = Self && Self->Attempt == ThisAttempt;
			if (bCurrent)
			{
				Self->Client = Connected;
				Self->SetStatus(Connected ? EAvatarBridgeConnection::Connected : EAvatarBridgeConnection::Failed, Error);
				if (!Connected)
				{
					UE_LOG(LogAvatarBridge, Warning, TEXT("Connect %s: %s"), *Endpoint, *Error);
				}
			}
			if (Done)
			{
				Done(bCurrent && Connected != nullptr, bCurrent ? Error : FString(TEXT("superseded by a newer Connect or Disconnect")));
			}
		});
	});
}

void UAvatarBridgeSubsystem::Disconnect()
{
	++Attempt;
	Client.reset();
	SetStatus(EAvatarBridgeConnection::Disconnected, FString());
}

void UAvatarBridgeSubsystem::SetStatus(EAvatarBridgeConnection NewStatus, const FString& Error)
{
	Status = NewStatus;
	if (NewStatus == EAvatarBridgeConnection::Failed)
	{
		LastError = Error;
	}
	else if (NewStatus == EAvatarBridgeConnection::Connected)
	{
		LastError.Reset();
	}
	OnConnectionChanged.Broadcast(NewStatus, Error);
}

bool UAvatarBridgeSubsystem::AddLiveLinkSource()
{
	IModularFeatures& Features = IModularFeatures::Get();
	if (!Features.IsModularFeatureAvailable(ILiveLinkClient::ModularFeatureName))
	{
		return false;
	}
	ILiveLinkClient& LiveLink = Features.GetModularFeature<ILiveLinkClient>(ILiveLinkClient::ModularFeatureName);
	return LiveLink.AddSource(MakeShared<FAvatarLiveLinkSource>()).IsValid();
}

std::shared_ptr<avatar_bridge::DriveSession> UAvatarBridgeSubsystem::StartDrive(
	const avatar_bridge::DriveOptions& Options, FString& OutError)
{
	if (!IsConnected())
	{
		OutError = TEXT("not connected: call Connect first");
		return nullptr;
	}
	auto Result = Client->StartDrive(Options);
	if (!Result.ok())
	{
		OutError = FromUtf8(Result.status().ToString());
		return nullptr;
	}
	return std::shared_ptr<avatar_bridge::DriveSession>(std::move(Result.value()));
}

void UAvatarBridgeSubsystem::Deinitialize()
{
	++Attempt;
	Client.reset();
	Super::Deinitialize();
}
