// Runtime glue: subsystem, actor component, Live Link reading, texture upload. Works in
// packaged builds; all protocol logic is in AvatarBridgeCore.
using UnrealBuildTool;

public class AvatarBridge : ModuleRules
{
	public AvatarBridge(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine", "LiveLinkInterface", "AvatarBridgeCore" });
		PrivateDependencyModuleNames.AddRange(new string[] { "RenderCore", "RHI" });
	}
}
