// The engine-independent client core (plain C++17, also built by unreal_plugin/CMakeLists.txt).
// libzmq is linked from Source/ThirdParty/ZeroMQ; cppzmq and msgpack-c are header-only
// (Source/ThirdParty/include). See the plugin README for how to fill ThirdParty.
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
		PublicDefinitions.Add("MSGPACK_NO_BOOST=1");

		string ThirdParty = Path.Combine(PluginDirectory, "Source", "ThirdParty");
		PrivateIncludePaths.Add(Path.Combine(ModuleDirectory, "Private"));
		PublicSystemIncludePaths.Add(Path.Combine(ThirdParty, "include"));

		string ZmqLib = Path.Combine(ThirdParty, "ZeroMQ", Target.Platform.ToString());
		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			PublicDefinitions.Add("ZMQ_STATIC=1");
			PublicAdditionalLibraries.Add(Path.Combine(ZmqLib, "libzmq.lib"));
			PublicSystemLibraries.AddRange(new string[] { "ws2_32.lib", "iphlpapi.lib", "advapi32.lib" });
		}
		else
		{
			PublicAdditionalLibraries.Add(Path.Combine(ZmqLib, "libzmq.a"));
		}
	}
}
