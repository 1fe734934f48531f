// Editor-only: the "Import Avatar glTF..." menu entry (UncookedOnly, never in packaged builds).
using UnrealBuildTool;

public class AvatarBridgeEditor : ModuleRules
{
	public AvatarBridgeEditor(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		PrivateDependencyModuleNames.AddRange(new string[] {
			"Core", "CoreUObject", "Engine", "Slate", "SlateCore", "ToolMenus", "UnrealEd",
			"AssetTools", "DesktopPlatform" });
	}
}
