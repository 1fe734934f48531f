// Runtime glue: subsystem, async Blueprint nodes, actor component, Live Link reading and the
// Live Link source, texture upload. Works in packaged builds; all protocol logic is in
// AvatarBridgeCore. LiveLinkInterface has the source/role types; LiveLink (the plugin's
// runtime module) registers the Live Link client the source is added to.
using UnrealBuildTool;

public class AvatarBridge : ModuleRules
{
	public AvatarBridge(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine", "LiveLinkInterface", "AvatarBridgeCore" });
		PrivateDependencyModuleNames.AddRange(new string[] { "RenderCore", "RHI", "LiveLink" });
	}
}
