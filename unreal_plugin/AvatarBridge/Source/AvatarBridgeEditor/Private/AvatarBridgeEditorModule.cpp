// Tools > "Import Avatar glTF...": pick a .glb exported by avatar-runtime (`avatar-runtime
// export` or ExportMesh) and import it into /Game/Avatars through the asset tools, which route
// glTF to the Interchange glTF pipeline (skinned mesh + the 52 ARKit morph targets).
#include "AssetToolsModule.h"
#include "DesktopPlatformModule.h"
#include "Framework/Application/SlateApplication.h"
#include "IDesktopPlatform.h"
#include "Misc/Paths.h"
#include "Modules/ModuleManager.h"
#include "ToolMenus.h"

#define LOCTEXT_NAMESPACE "AvatarBridgeEditor"

namespace
{
const TCHAR* const ImportFolder = TEXT("/Game/Avatars");

void ImportAvatarGltf()
{
	IDesktopPlatform* Desktop = FDesktopPlatformModule::Get();
	TArray<FString> Files;
	const void* ParentWindow = FSlateApplication::Get().FindBestParentWindowHandleForDialogs(nullptr);
	if (!Desktop || !Desktop->OpenFileDialog(ParentWindow, TEXT("Import avatar (glTF)"), FPaths::ProjectDir(), TEXT(""),
		TEXT("glTF binary (*.glb)|*.glb|glTF (*.gltf)|*.gltf"), EFileDialogFlags::None, Files) || Files.IsEmpty())
	{
		return;
	}
	IAssetTools& AssetTools = FModuleManager::LoadModuleChecked<FAssetToolsModule>("AssetTools").Get();
	AssetTools.ImportAssets(Files, ImportFolder);
}
}

class FAvatarBridgeEditorModule : public IModuleInterface
{
public:
	virtual void StartupModule() override
	{
		UToolMenus::RegisterStartupCallback(
			FSimpleMulticastDelegate::FDelegate::CreateRaw(this, &FAvatarBridgeEditorModule::RegisterMenus));
	}

	virtual void ShutdownModule() override
	{
		UToolMenus::UnRegisterStartupCallback(this);
		UToolMenus::UnregisterOwner(this);
	}

private:
	void RegisterMenus()
	{
		FToolMenuOwnerScoped OwnerScoped(this);
		UToolMenu* Menu = UToolMenus::Get()->ExtendMenu("LevelEditor.MainMenu.Tools");
		FToolMenuSection& Section = Menu->FindOrAddSection("AvatarBridge", LOCTEXT("Section", "Avatar Bridge"));
		Section.AddMenuEntry("ImportAvatarGltf",
			LOCTEXT("ImportAvatarGltf", "Import Avatar glTF..."),
			LOCTEXT("ImportAvatarGltfTip", "Import a .glb exported by avatar-runtime into /Game/Avatars"),
			FSlateIcon(), FUIAction(FExecuteAction::CreateStatic(&ImportAvatarGltf)));
	}
};

#undef LOCTEXT_NAMESPACE

IMPLEMENT_MODULE(FAvatarBridgeEditorModule, AvatarBridgeEditor)
