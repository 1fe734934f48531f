#include "AvatarBridgeSubsystem.h"

#include "Async/Async.h"
#include "AvatarBridgeCore/RuntimeClient.h"
#include "AvatarBridgeStrings.h"
#include "Misc/FileHelper.h"

using namespace AvatarBridgeStrings;

bool UAvatarBridgeSubsystem::Connect(const FString& Endpoint, const FString& Token, float TimeoutSeconds)
{
	avatar_bridge::ClientOptions Options;
	Options.endpoint = ToUtf8(Endpoint);
	Options.token = ToUtf8(Token);
	Options.call_timeout = std::chrono::milliseconds(FMath::Max(100, int32(TimeoutSeconds * 1000.f)));
	auto Result = avatar_bridge::RuntimeClient::Connect(Options);
	if (!Result.ok())
	{
		LastError = FromUtf8(Result.status().ToString());
		UE_LOG(LogAvatarBridge, Warning, TEXT("Connect %s: %s"), *Endpoint, *LastError);
		return false;
	}
	Client = std::move(Result.value());
	LastError.Reset();
	return true;
}

void UAvatarBridgeSubsystem::Disconnect() { Client.reset(); }

bool UAvatarBridgeSubsystem::IsConnected() const { return Client != nullptr; }

void UAvatarBridgeSubsystem::CreateAvatarFromFile(const FString& ImagePath, const FString& Name)
{
	TArray<uint8> Bytes;
	if (!Client || !FFileHelper::LoadFileToArray(Bytes, *ImagePath))
	{
		LastError = Client ? FString::Printf(TEXT("cannot read %s"), *ImagePath) : TEXT("not connected");
		OnAvatarCreated.Broadcast(FString(), LastError);
		return;
	}
	std::vector<uint8_t> Image(Bytes.GetData(), Bytes.GetData() + Bytes.Num());
	TWeakObjectPtr<UAvatarBridgeSubsystem> Weak(this);
	Async(EAsyncExecution::ThreadPool, [Runtime = Client, Image = std::move(Image), Utf8Name = ToUtf8(Name), Weak]()
	{
		auto Result = Runtime->CreateAvatar(Image, Utf8Name);
		const FString Id = Result.ok() ? FromUtf8(Result->id) : FString();
		const FString Error = Result.ok() ? FString() : FromUtf8(Result.status().ToString());
		AsyncTask(ENamedThreads::GameThread, [Weak, Id, Error]()
		{
			if (UAvatarBridgeSubsystem* Self = Weak.Get())
			{
				Self->LastError = Error;
				Self->OnAvatarCreated.Broadcast(Id, Error);
			}
		});
	});
}

std::unique_ptr<avatar_bridge::DriveSession> UAvatarBridgeSubsystem::StartDrive(
	const avatar_bridge::DriveOptions& Options, FString& OutError)
{
	if (!Client)
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
	return std::move(Result.value());
}

void UAvatarBridgeSubsystem::Deinitialize()
{
	Client.reset();
	Super::Deinitialize();
}
