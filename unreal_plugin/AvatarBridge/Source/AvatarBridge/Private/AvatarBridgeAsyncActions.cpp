#include "AvatarBridgeAsyncActions.h"

#include "Async/Async.h"
#include "AvatarBridgeCore/RuntimeClient.h"
#include "AvatarBridgeStrings.h"
#include "AvatarBridgeSubsystem.h"
#include "AvatarDriverComponent.h"
#include "Engine/Engine.h"
#include "Engine/GameInstance.h"
#include "Engine/World.h"
#include "HAL/FileManager.h"
#include "Misc/FileHelper.h"
#include "Misc/Paths.h"

using namespace AvatarBridgeStrings;

namespace
{
std::chrono::milliseconds Millis(float Seconds) { return std::chrono::milliseconds(FMath::Max(1, int32(Seconds * 1000.f))); }
}

// ---- base -------------------------------------------------------------------------------
void UAvatarBridgeAsyncAction::Finish(bool bOk, const FString& Value, const FString& Error)
{
	if (bOk)
	{
		Success.Broadcast(Value, FString());
	}
	else
	{
		UE_LOG(LogAvatarBridge, Warning, TEXT("%s: %s"), *GetClass()->GetName(), *Error);
		Failure.Broadcast(Value, Error);
	}
	SetReadyToDestroy();
}

void UAvatarBridgeAsyncAction::RunOnWorker(TFunction<void(bool&, FString&, FString&)> Work)
{
	TWeakObjectPtr<UAvatarBridgeAsyncAction> Weak(this);
	Async(EAsyncExecution::ThreadPool, [Weak, Work = MoveTemp(Work)]()
	{
		bool bOk = false;
		FString Value, Error;
		Work(bOk, Value, Error);
		AsyncTask(ENamedThreads::GameThread, [Weak, bOk, Value, Error]()
		{
			if (UAvatarBridgeAsyncAction* Self = Weak.Get())
			{
				Self->Finish(bOk, Value, Error);
			}
		});
	});
}

UAvatarBridgeSubsystem* UAvatarBridgeAsyncAction::Subsystem() const
{
	UWorld* World = GEngine ? GEngine->GetWorldFromContextObject(WorldContext.Get(), EGetWorldErrorMode::ReturnNull) : nullptr;
	UGameInstance* GameInstance = World ? World->GetGameInstance() : nullptr;
	return GameInstance ? GameInstance->GetSubsystem<UAvatarBridgeSubsystem>() : nullptr;
}

// ---- connect ----------------------------------------------------------------------------
UAvatarConnectAction* UAvatarConnectAction::ConnectToRuntime(UObject* WorldContextObject, const FString& Endpoint,
                                                             const FString& Token, float TimeoutSeconds)
{
	UAvatarConnectAction* Action = NewObject<UAvatarConnectAction>();
	Action->WorldContext = WorldContextObject;
	Action->Endpoint = Endpoint;
	Action->Token = Token;
	Action->TimeoutSeconds = TimeoutSeconds;
	Action->RegisterWithGameInstance(WorldContextObject);
	return Action;
}

void UAvatarConnectAction::Activate()
{
	UAvatarBridgeSubsystem* Bridge = Subsystem();
	if (!Bridge)
	{
		Finish(false, FString(), TEXT("no game instance (Avatar Bridge subsystem) for this world"));
		return;
	}
	TWeakObjectPtr<UAvatarConnectAction> Weak(this);
	Bridge->ConnectThen(Endpoint, Token, TimeoutSeconds, [Weak](bool bOk, const FString& Error)
	{
		if (UAvatarConnectAction* Self = Weak.Get())
		{
			Self->Finish(bOk, FString(), Error);
		}
	});
}

// ---- create -----------------------------------------------------------------------------
UAvatarCreateAction* UAvatarCreateAction::CreateAvatar(UObject* WorldContextObject, const FString& ImagePath, const FString& Name)
{
	UAvatarCreateAction* Action = NewObject<UAvatarCreateAction>();
	Action->WorldContext = WorldContextObject;
	Action->ImagePath = ImagePath;
	Action->Name = Name;
	Action->RegisterWithGameInstance(WorldContextObject);
	return Action;
}

void UAvatarCreateAction::Activate()
{
	UAvatarBridgeSubsystem* Bridge = Subsystem();
	std::shared_ptr<avatar_bridge::RuntimeClient> Client = Bridge ? Bridge->GetClient() : nullptr;
	if (!Client)
	{
		Finish(false, FString(), TEXT("not connected: use Connect To Avatar Runtime first"));
		return;
	}
	RunOnWorker([Client, Path = ImagePath, Utf8Name = ToUtf8(Name)](bool& bOk, FString& Value, FString& Error)
	{
		TArray<uint8> Bytes;
		if (!FFileHelper::LoadFileToArray(Bytes, *Path))
		{
			Error = FString::Printf(TEXT("cannot read %s"), *Path);
			return;
		}
		auto Result = Client->CreateAvatar(std::vector<uint8_t>(Bytes.GetData(), Bytes.GetData() + Bytes.Num()), Utf8Name);
		bOk = Result.ok();
		Value = bOk ? FromUtf8(Result->id) : FString();
		Error = bOk ? FString() : FromUtf8(Result.status().ToString());
	});
}

// ---- export -----------------------------------------------------------------------------
UAvatarExportAction* UAvatarExportAction::ExportMesh(UObject* WorldContextObject, const FString& AvatarId,
                                                     const FString& Format, const FString& Directory)
{
	UAvatarExportAction* Action = NewObject<UAvatarExportAction>();
	Action->WorldContext = WorldContextObject;
	Action->AvatarId = AvatarId;
	Action->Format = Format.IsEmpty() ? TEXT("glb") : Format;
	Action->Directory = Directory.IsEmpty() ? FPaths::Combine(FPaths::ProjectSavedDir(), TEXT("Avatars")) : Directory;
	Action->RegisterWithGameInstance(WorldContextObject);
	return Action;
}

void UAvatarExportAction::Activate()
{
	UAvatarBridgeSubsystem* Bridge = Subsystem();
	std::shared_ptr<avatar_bridge::RuntimeClient> Client = Bridge ? Bridge->GetClient() : nullptr;
	if (!Client)
	{
		Finish(false, FString(), TEXT("not connected: use Connect To Avatar Runtime first"));
		return;
	}
	RunOnWorker([Client, Id = ToUtf8(AvatarId), Fmt = Format, Dir = Directory](bool& bOk, FString& Value, FString& Error)
	{
		avatar_bridge::ExportOptions Options;
		Options.format = ToUtf8(Fmt);
		auto Files = Client->ExportMesh(Id, Options);
		if (!Files.ok())
		{
			Error = FromUtf8(Files.status().ToString());
			return;
		}
		IFileManager::Get().MakeDirectory(*Dir, true);
		for (const avatar_bridge::MeshFile& File : *Files)
		{
			const FString Path = FPaths::Combine(Dir, FPaths::GetCleanFilename(FromUtf8(File.file_name)));
			TArrayView<const uint8> Bytes(File.data.data(), int32(File.data.size()));
			if (!FFileHelper::SaveArrayToFile(Bytes, *Path))
			{
				Error = FString::Printf(TEXT("cannot write %s"), *Path);
				return;
			}
			if (Value.IsEmpty())
			{
				Value = Path;  // the runtime sends the main file first
			}
		}
		bOk = true;
	});
}

// ---- drive ------------------------------------------------------------------------------
UAvatarStartDriveAction* UAvatarStartDriveAction::StartDrive(UAvatarDriverComponent* Driver, float TimeoutSeconds)
{
	UAvatarStartDriveAction* Action = NewObject<UAvatarStartDriveAction>();
	Action->WorldContext = Driver;
	Action->Driver = Driver;
	Action->TimeoutSeconds = TimeoutSeconds;
	Action->RegisterWithGameInstance(Driver);
	return Action;
}

void UAvatarStartDriveAction::Activate()
{
	UAvatarDriverComponent* Component = Driver.Get();
	if (!Component || !Component->StartDriving())
	{
		Finish(false, FString(), Component ? Component->GetStatus() + TEXT(" (connected? AvatarId set?)") : TEXT("no driver component"));
		return;
	}
	std::shared_ptr<avatar_bridge::DriveSession> Session = Component->GetSession();
	RunOnWorker([Session, Timeout = Millis(TimeoutSeconds)](bool& bOk, FString& Value, FString& Error)
	{
		const avatar_bridge::Status Started = Session->WaitStarted(Timeout);
		bOk = Started.ok();
		Error = bOk ? FString() : FromUtf8(Started.ToString());
	});
}

UAvatarStopDriveAction* UAvatarStopDriveAction::StopDrive(UAvatarDriverComponent* Driver, float TimeoutSeconds)
{
	UAvatarStopDriveAction* Action = NewObject<UAvatarStopDriveAction>();
	Action->WorldContext = Driver;
	Action->Driver = Driver;
	Action->TimeoutSeconds = TimeoutSeconds;
	Action->RegisterWithGameInstance(Driver);
	return Action;
}

void UAvatarStopDriveAction::Activate()
{
	UAvatarDriverComponent* Component = Driver.Get();
	std::shared_ptr<avatar_bridge::DriveSession> Session = Component ? Component->DetachSession() : nullptr;
	if (!Session)
	{
		Finish(false, FString(), TEXT("the driver has no running session"));
		return;
	}
	RunOnWorker([Session, Timeout = Millis(TimeoutSeconds)](bool& bOk, FString& Value, FString& Error)
	{
		const avatar_bridge::Status Ended = Session->End(Timeout);
		const avatar_bridge::DriveStats Stats = Session->Stats();
		bOk = Ended.ok();
		Value = FString::Printf(TEXT("rendered %llu, dropped %llu of %llu received"), (unsigned long long)Stats.server_rendered,
		                        (unsigned long long)Stats.server_dropped, (unsigned long long)Stats.server_received);
		Error = bOk ? FString() : FromUtf8(Ended.ToString());
	});
}
