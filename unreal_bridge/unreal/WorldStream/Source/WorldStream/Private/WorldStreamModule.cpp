// Not compiled on CI: needs Unreal Engine 5.x + glTFRuntime.
#include "Modules/ModuleManager.h"

IMPLEMENT_MODULE(FDefaultModuleImpl, WorldStream)
