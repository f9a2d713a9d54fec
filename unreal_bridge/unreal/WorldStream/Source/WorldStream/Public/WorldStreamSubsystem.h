// Not compiled on CI: needs Unreal Engine 5.x + glTFRuntime.
//
// UWorldStreamSubsystem: connects to `worldstream serve` (protocol v1), sends the player camera's
// (or a chosen actor's, e.g. an AirSim vehicle's) view at a set rate, and keeps the streamed chunks
// in the level as static mesh actors built by glTFRuntime (async, complex collision), each chunk's
// instanced trees (EXT_mesh_gpu_instancing child nodes) as instanced static mesh components. All protocol,
// fragment, credit, GLB, residency (REPLACE swaps, unloads) and frame logic lives in the plain C++
// core (../../../WorldStreamCore, tested on CI); this class only moves bytes and actors.
#pragma once

#include "CoreMinimal.h"
#include "Subsystems/WorldSubsystem.h"
#include "WorldStreamSubsystem.generated.h"

class IWebSocket;
class AStaticMeshActor;
class UStaticMesh;
class UglTFRuntimeAsset;
class UWorldStreamChunkLoad;
namespace ws { class ClientSession; class FrameMapper; struct ChunkKey; }

USTRUCT(BlueprintType)
struct FWorldStreamStats
{
	GENERATED_BODY()
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int64 ChunksReceived = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int64 BytesReceived = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int32 Resident = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int32 Loading = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int32 Drawn = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int64 Unloaded = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int64 Errors = 0;
	UPROPERTY(BlueprintReadOnly, Category = "WorldStream") int64 ViewsSent = 0;
};

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FWorldStreamChunkEvent, const FString&, Key, AActor*, Actor);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FWorldStreamMessageEvent, const FString&, Message);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FWorldStreamStatsEvent, const FWorldStreamStats&, Stats);

UCLASS(Config = Game)
class WORLDSTREAM_API UWorldStreamSubsystem : public UTickableWorldSubsystem
{
	GENERATED_BODY()

public:
	// ---- settings (Blueprint, or Config/DefaultGame.ini [/Script/WorldStream.WorldStreamSubsystem])
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") FString ServerUrl = TEXT("ws://127.0.0.1:8765/");
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") FString Token;
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") bool bConnectOnBeginPlay = false;
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") float ViewsPerSecond = 10.f;
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") float MaxScreenSpaceError = 16.f;
	// Viewport the screen-space error refers to (0: the game viewport's size).
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") FIntPoint Viewport = FIntPoint(0, 0);
	// The actor whose view streams, through its first active camera component (AActor::CalcCamera:
	// position, rotation and field of view), e.g. an AirSim camera (APIPCamera); an actor without
	// one streams its eyes' view with a 90 deg field of view. None: the player camera.
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldStream") TObjectPtr<AActor> ViewSource;
	// AirSim's convention: the PlayerStart is its NED origin, and world ENU point PlayerStartEnu (the
	// world origin in `worldstream airsim settings`, where OriginGeopoint is). Its Unreal location is
	// read from the level's first PlayerStart at connect.
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") FVector PlayerStartEnu = FVector::ZeroVector;
	// Origin rebasing (UWorld::SetNewWorldOrigin) when the view is farther than this from the origin, m (0: off).
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") float RebaseDistanceM = 0.f;
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") float RebaseStepM = 1024.f;
	UPROPERTY(Config, EditAnywhere, BlueprintReadWrite, Category = "WorldStream") bool bComplexCollision = true;

	// ---- events
	UPROPERTY(BlueprintAssignable, Category = "WorldStream") FWorldStreamChunkEvent OnChunkLoaded;
	UPROPERTY(BlueprintAssignable, Category = "WorldStream") FWorldStreamChunkEvent OnChunkUnloaded;
	UPROPERTY(BlueprintAssignable, Category = "WorldStream") FWorldStreamMessageEvent OnError;
	UPROPERTY(BlueprintAssignable, Category = "WorldStream") FWorldStreamStatsEvent OnStats;

	UFUNCTION(BlueprintCallable, Category = "WorldStream") void Connect(const FString& Url, const FString& InToken);
	UFUNCTION(BlueprintCallable, Category = "WorldStream") void Disconnect();
	UFUNCTION(BlueprintPure, Category = "WorldStream") FWorldStreamStats GetStats() const { return Stats; }
	UFUNCTION(BlueprintPure, Category = "WorldStream") bool IsConnected() const;
	// World ENU metres <-> this level's Unreal centimetres (PlayerStart convention, rebasing included).
	UFUNCTION(BlueprintPure, Category = "WorldStream") FVector EnuToUnreal(const FVector& Enu) const;
	UFUNCTION(BlueprintPure, Category = "WorldStream") FVector UnrealToEnu(const FVector& UnrealCm) const;

	// called by UWorldStreamChunkLoad when glTFRuntime finished every mesh of a chunk
	void OnChunkBuilt(UWorldStreamChunkLoad* Load);

	virtual void OnWorldBeginPlay(UWorld& InWorld) override;
	virtual void Deinitialize() override;
	virtual void Tick(float DeltaTime) override;
	virtual TStatId GetStatId() const override;

private:
	TSharedPtr<IWebSocket> Socket;
	TSharedPtr<ws::ClientSession> Session;
	TSharedPtr<ws::FrameMapper> Mapper;
	UPROPERTY() TMap<FString, TObjectPtr<AStaticMeshActor>> Actors;
	UPROPERTY() TArray<TObjectPtr<UWorldStreamChunkLoad>> LoadsInFlight;
	FWorldStreamStats Stats;
	double SinceView = 0, SinceStats = 0;

	void SendText(const std::string& Text);
	void PumpSession();
	void SpawnChunk(const struct ws::ChunkArrival& Arrival);
	void DestroyChunk(const FString& Key);
	void UpdateVisibility();
	void SendView();
};

// One kind of tree of a chunk: a child node of the chunk node with EXT_mesh_gpu_instancing.
USTRUCT()
struct FWorldStreamTreeBatch
{
	GENERATED_BODY()
	int32 MeshIndex = INDEX_NONE;
	FString Name;
	FTransform NodeTransform;    // relative to the chunk node (glTFRuntime's basis and scale)
	TArray<FTransform> Instances;  // relative to the node
	UPROPERTY() TObjectPtr<UStaticMesh> Mesh;
};

// One chunk's glTFRuntime loads: the chunk mesh, then one mesh per tree kind, one after another
// (as glTFRuntime's own async actor loads an asset's meshes); the chunk is handed to the
// subsystem once all of them finished.
UCLASS()
class WORLDSTREAM_API UWorldStreamChunkLoad : public UObject
{
	GENERATED_BODY()
public:
	UPROPERTY() TObjectPtr<UglTFRuntimeAsset> Asset;
	UPROPERTY() TObjectPtr<UStaticMesh> ChunkMesh;
	UPROPERTY() TArray<FWorldStreamTreeBatch> Trees;
	TWeakObjectPtr<UWorldStreamSubsystem> Owner;
	FString Key;
	uint64 Ticket = 0;
	FVector Location = FVector::ZeroVector;
	int32 ChunkMeshIndex = INDEX_NONE;
	bool bComplexCollision = true;
	int32 Next = 0;  // 0: the chunk mesh, i > 0: Trees[i - 1]
	void LoadNext();
	UFUNCTION() void OnLoaded(UStaticMesh* Mesh);
};
