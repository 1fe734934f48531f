// External module: libzmq (static) + the header-only cppzmq and msgpack-c, as filled by
// unreal_plugin/scripts/fetch_thirdparty.sh (Linux, Mac) or fetch_thirdparty.ps1 (Win64):
//
//   include/          zmq.h zmq_utils.h zmq.hpp zmq_addon.hpp msgpack.hpp msgpack/
//   lib/Win64/libzmq.lib   lib/Linux/libzmq.a   lib/Mac/libzmq.a
//
// libzmq is built without libsodium, so nothing else is linked (no CURVE encryption; use the
// token on loopback).
using System.IO;
using UnrealBuildTool;

public class AvatarBridgeLibs : ModuleRules
{
	public AvatarBridgeLibs(ReadOnlyTargetRules Target) : base(Target)
	{
		Type = ModuleType.External;

		PublicSystemIncludePaths.Add(Path.Combine(ModuleDirectory, "include"));
		PublicDefinitions.Add("ZMQ_STATIC=1");
		PublicDefinitions.Add("MSGPACK_NO_BOOST=1");

		string LibDir = Path.Combine(ModuleDirectory, "lib", Target.Platform.ToString());
		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			PublicAdditionalLibraries.Add(Path.Combine(LibDir, "libzmq.lib"));
			PublicSystemLibraries.AddRange(new string[] { "ws2_32.lib", "iphlpapi.lib", "advapi32.lib" });
		}
		else if (Target.Platform == UnrealTargetPlatform.Linux || Target.Platform == UnrealTargetPlatform.Mac)
		{
			PublicAdditionalLibraries.Add(Path.Combine(LibDir, "libzmq.a"));
		}

		string Header = Path.Combine(ModuleDirectory, "include", "zmq.hpp");
		if (!File.Exists(Header) || !File.Exists(Path.Combine(LibDir,
			Target.Platform == UnrealTargetPlatform.Win64 ? "libzmq.lib" : "libzmq.a")))
		{
			throw new BuildException("AvatarBridgeLibs is empty for " + Target.Platform + ": run " +
				"unreal_plugin/scripts/fetch_thirdparty.sh (Linux, Mac) or fetch_thirdparty.ps1 (Win64) first.");
		}
	}
}
