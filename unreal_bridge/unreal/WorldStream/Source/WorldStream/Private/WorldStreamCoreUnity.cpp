// Not compiled on CI: needs Unreal Engine 5.x + glTFRuntime.
// Builds the plain C++17 core into the WorldStream module (the same files ctest tests on CI).
#include "CoreMinimal.h"

THIRD_PARTY_INCLUDES_START
#include "../../../../WorldStreamCore/src/json.cpp"
#include "../../../../WorldStreamCore/src/keys.cpp"
#include "../../../../WorldStreamCore/src/protocol.cpp"
#include "../../../../WorldStreamCore/src/residency.cpp"
#include "../../../../WorldStreamCore/src/frames.cpp"
#include "../../../../WorldStreamCore/src/glb.cpp"
#include "../../../../WorldStreamCore/src/client.cpp"
THIRD_PARTY_INCLUDES_END
