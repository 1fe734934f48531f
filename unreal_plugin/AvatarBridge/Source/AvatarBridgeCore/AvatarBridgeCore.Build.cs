// The engine-independent client core (plain C++17, also built by unreal_plugin/CMakeLists.txt).
// libzmq, cppzmq and msgpack-c come from the AvatarBridgeLibs ThirdParty module
// (Source/ThirdParty/AvatarBridgeLibs, filled by unreal_plugin/scripts/fetch_thirdparty.*).
using System.IO;
using UnrealBuildTool;

public class AvatarBridgeCore : ModuleRules
{
	public AvatarBridgeCore(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.NoPCHs;
		bUseUnity = false;
		CppStandard = CppStandardVersion.Cpp17;
		bEnableExceptions = true;  // libzmq / msgpack-c throw; the core catches at its API
		UndefinedIdentifierWarningLevel = WarningLevel.Off;  // third-party headers
		ShadowVariableWarningLevel = WarningLevel.Off;

		PublicDependencyModuleNames.Add("Core");  // module boilerplate only; the core uses std::
		PrivateDependencyModuleNames.Add("AvatarBridgeLibs");  // include path, defines, libzmq
		PrivateIncludePaths.Add(Path.Combine(ModuleDirectory, "Private"));
	}
}
