// Editor-only: the "Import Avatar glTF..." menu entry. Type Editor in the .uplugin: it depends on
// UnrealEd and ToolMenus, which exist only in editor builds (never in packaged games).
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
