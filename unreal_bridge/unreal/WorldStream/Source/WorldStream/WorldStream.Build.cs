// Not compiled on CI: needs Unreal Engine 5.x + glTFRuntime.
// The module compiles the plain C++17 core (../../../WorldStreamCore, tested on CI with ctest)
// together with the thin Unreal glue in Private/.
using System.IO;
using UnrealBuildTool;

public class WorldStream : ModuleRules
{
	public WorldStream(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		bEnableExceptions = true;  // the core reports malformed input with exceptions

		string Core = Path.GetFullPath(Path.Combine(ModuleDirectory, "..", "..", "..", "WorldStreamCore"));
		PublicIncludePaths.Add(Path.Combine(Core, "include"));
		// The core's sources are built as part of this module (see Private/WorldStreamCoreUnity.cpp).
		PrivateDefinitions.Add("WORLDSTREAM_CORE_DIR=\"" + Core.Replace("\\", "/") + "\"");

		PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine" });
		PrivateDependencyModuleNames.AddRange(new string[] { "WebSockets", "Json", "glTFRuntime" });
	}
}
