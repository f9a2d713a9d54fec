// Not compiled on CI: needs Unreal Engine 5.x + glTFRuntime.
// Thin glue: bytes between IWebSocket and ws::ClientSession, meshes between glTFRuntime and
// ws::Residency, poses between the camera and ws::FrameMapper. See WorldStreamSubsystem.h.
#include "WorldStreamSubsystem.h"

#include "Camera/CameraTypes.h"
#include "Camera/PlayerCameraManager.h"
#include "Components/InstancedStaticMeshComponent.h"
#include "Engine/StaticMesh.h"
#include "Engine/StaticMeshActor.h"
#include "Engine/World.h"
#include "GameFramework/PlayerController.h"
#include "GameFramework/PlayerStart.h"
#include "IWebSocket.h"
#include "Components/StaticMeshComponent.h"
#include "Kismet/GameplayStatics.h"
#include "UnrealClient.h"
#include "Engine/GameViewportClient.h"
#include "WebSocketsModule.h"
#include "glTFRuntimeAsset.h"
#include "glTFRuntimeFunctionLibrary.h"

THIRD_PARTY_INCLUDES_START
#include "worldstream/client.hpp"
#include "worldstream/frames.hpp"
THIRD_PARTY_INCLUDES_END

namespace
{
FString ToF(const std::string& S) { return FString(UTF8_TO_TCHAR(S.c_str())); }
std::string ToS(const FString& S) { return std::string(TCHAR_TO_UTF8(*S)); }
ws::Vec3 ToV(const FVector& V) { return {V.X, V.Y, V.Z}; }
FVector ToF(const ws::Vec3& V) { return FVector(V.x, V.y, V.z); }
}

void UWorldStreamSubsystem::OnWorldBeginPlay(UWorld& InWorld)
{
	Super::OnWorldBeginPlay(InWorld);
	if (bConnectOnBeginPlay) Connect(ServerUrl, Token);
}

void UWorldStreamSubsystem::Deinitialize()
{
	Disconnect();
	Super::Deinitialize();
}

TStatId UWorldStreamSubsystem::GetStatId() const { RETURN_QUICK_DECLARE_CYCLE_STAT(UWorldStreamSubsystem, STATGROUP_Tickables); }

bool UWorldStreamSubsystem::IsConnected() const { return Socket.IsValid() && Socket->IsConnected(); }

void UWorldStreamSubsystem::Connect(const FString& Url, const FString& InToken)
{
	Disconnect();
	ServerUrl = Url;
	Token = InToken;
	// PlayerStart convention (docs/frames.md): its Unreal location is world ENU point PlayerStartEnu.
	FVector StartCm = FVector::ZeroVector;
	if (AActor* Start = UGameplayStatics::GetActorOfClass(GetWorld(), APlayerStart::StaticClass())) StartCm = Start->GetActorLocation();
	Mapper = MakeShared<ws::FrameMapper>(ToV(StartCm), ToV(PlayerStartEnu));
	ws::Hello Hello;
	Hello.client = "worldstream.unreal";
	if (!Token.IsEmpty()) Hello.token = ToS(Token);
	Session = MakeShared<ws::ClientSession>(Hello);

	if (!FModuleManager::Get().IsModuleLoaded("WebSockets")) FModuleManager::Get().LoadModule("WebSockets");
	Socket = FWebSocketsModule::Get().CreateWebSocket(Url, TEXT(""));
	TWeakObjectPtr<UWorldStreamSubsystem> Weak(this);
	Socket->OnConnected().AddLambda([Weak]() {
		if (Weak.IsValid() && Weak->Session) Weak->SendText(Weak->Session->hello_text());
	});
	Socket->OnMessage().AddLambda([Weak](const FString& Text) {
		if (Weak.IsValid() && Weak->Session) Weak->Session->on_text(ToS(Text));
	});
	// Binary messages arrive in fragments: the core accumulates them until the last one.
	Socket->OnBinaryMessage().AddLambda([Weak](const void* Data, SIZE_T Size, bool bIsLastFragment) {
		if (Weak.IsValid() && Weak->Session) Weak->Session->on_binary_fragment(Data, Size, bIsLastFragment);
	});
	Socket->OnConnectionError().AddLambda([Weak](const FString& Error) {
		if (Weak.IsValid()) Weak->OnError.Broadcast(TEXT("connection error: ") + Error);
	});
	Socket->OnClosed().AddLambda([Weak](int32 Code, const FString& Reason, bool bClean) {
		if (Weak.IsValid()) Weak->OnError.Broadcast(FString::Printf(TEXT("closed %d: %s"), Code, *Reason));
	});
	Socket->Connect();
}

void UWorldStreamSubsystem::Disconnect()
{
	if (Socket.IsValid())
	{
		Socket->Close(1000, TEXT("bye"));
		Socket.Reset();
	}
	if (Session)
	{
		for (const ws::ChunkKey& Key : Session->residency().clear()) DestroyChunk(ToF(Key.path()));
		Session.Reset();
	}
	for (auto& Pair : Actors) if (Pair.Value) Pair.Value->Destroy();
	Actors.Empty();
	LoadsInFlight.Empty();
}

void UWorldStreamSubsystem::SendText(const std::string& Text)
{
	if (IsConnected()) Socket->Send(ToF(Text));
}

void UWorldStreamSubsystem::Tick(float DeltaTime)
{
	if (!Session || !IsConnected()) return;
	PumpSession();
	SinceView += DeltaTime;
	if (Session->welcomed() && ViewsPerSecond > 0 && SinceView >= 1.0 / ViewsPerSecond)
	{
		SinceView = 0;
		SendView();
	}
	SinceStats += DeltaTime;
	if (SinceStats >= 1.0)
	{
		SinceStats = 0;
		Stats.Resident = Session->residency().size();
		Stats.Loading = Session->residency().count(ws::Residency::State::Loading);
		OnStats.Broadcast(Stats);
	}
}

void UWorldStreamSubsystem::PumpSession()
{
	for (const std::string& Text : Session->take_outgoing()) SendText(Text);  // credit, one per frame
	for (const ws::ProtocolError& E : Session->take_errors())
	{
		++Stats.Errors;
		OnError.Broadcast(ToF(E.code() + ": " + E.what()));
	}
	for (const ws::ChunkArrival& A : Session->take_chunks())
	{
		++Stats.ChunksReceived;
		Stats.BytesReceived += A.bytes->size();
		if (A.ticket) SpawnChunk(A);
	}
	bool bChanged = false;
	for (const ws::ChunkKey& Key : Session->residency().take_released())
	{
		DestroyChunk(ToF(Key.path()));
		bChanged = true;
	}
	if (bChanged) UpdateVisibility();
}

void UWorldStreamSubsystem::SpawnChunk(const ws::ChunkArrival& A)
{
	const ws::PartRef* Part = A.frame.find("mesh.glb");  // checked by the core
	TArray<uint8> Glb;
	Glb.Append(A.bytes->data() + Part->offset, Part->size);
	FglTFRuntimeConfig LoaderConfig;  // default basis and SceneScale 100: docs/frames.md
	UglTFRuntimeAsset* Asset = UglTFRuntimeFunctionLibrary::glTFLoadAssetFromData(Glb, LoaderConfig);
	// The scene's one root node holds the chunk mesh; its children are the instanced trees (the
	// exporter writes the tree meshes first, so the chunk mesh is not mesh 0 in forest chunks).
	FglTFRuntimeScene Scene;
	FglTFRuntimeNode Root;
	if (!Asset || !Asset->GetDefaultScene(Scene) || Scene.RootNodesIndices.Num() != 1 ||
		!Asset->GetNode(Scene.RootNodesIndices[0], Root) || Root.MeshIndex < 0)
	{
		Session->residency().on_failed(A.frame.key, A.ticket);
		OnError.Broadcast(TEXT("glTFRuntime could not read chunk ") + ToF(A.frame.key.path()));
		return;
	}
	UWorldStreamChunkLoad* Load = NewObject<UWorldStreamChunkLoad>(this);
	Load->Asset = Asset;
	Load->Owner = this;
	Load->Key = ToF(A.frame.key.path());
	Load->Ticket = A.ticket;
	Load->Location = ToF(Mapper->to_unreal(A.meta.origin_enu));  // vertices are relative to the chunk origin
	for (const int32 Child : Root.ChildrenIndices)
	{
		FWorldStreamTreeBatch Batch;
		FglTFRuntimeNode Node;
		// glTFRuntime reads EXT_mesh_gpu_instancing into Unreal-space transforms relative to the node
		if (Asset->GetNode(Child, Node) && Node.MeshIndex >= 0 && Asset->GetNodeGPUInstancingTransforms(Child, Batch.Instances) && Batch.Instances.Num() > 0)
		{
			Batch.MeshIndex = Node.MeshIndex;
			Batch.Name = Node.Name;
			Batch.NodeTransform = Node.Transform;
			Load->Trees.Add(MoveTemp(Batch));
		}
	}
	Load->ChunkMeshIndex = Root.MeshIndex;
	Load->bComplexCollision = bComplexCollision;
	LoadsInFlight.Add(Load);
	Load->LoadNext();
}

void UWorldStreamChunkLoad::LoadNext()
{
	FglTFRuntimeStaticMeshConfig MeshConfig;
	MeshConfig.bBuildComplexCollision = bComplexCollision;
	MeshConfig.CollisionComplexity = ECollisionTraceFlag::CTF_UseComplexAsSimple;
	MeshConfig.bAllowCPUAccess = true;  // complex collision needs the vertices on the CPU
	MeshConfig.Outer = GetOuter();      // the subsystem
	FglTFRuntimeStaticMeshAsync Callback;
	Callback.BindUFunction(this, GET_FUNCTION_NAME_CHECKED(UWorldStreamChunkLoad, OnLoaded));
	Asset->LoadStaticMeshAsync(Next == 0 ? ChunkMeshIndex : Trees[Next - 1].MeshIndex, Callback, MeshConfig);
}

void UWorldStreamChunkLoad::OnLoaded(UStaticMesh* Mesh)
{
	if (Next == 0) ChunkMesh = Mesh;
	else Trees[Next - 1].Mesh = Mesh;
	if (ChunkMesh && ++Next <= Trees.Num()) LoadNext();  // a chunk whose mesh failed loads no trees
	else if (Owner.IsValid()) Owner->OnChunkBuilt(this);
}

void UWorldStreamSubsystem::OnChunkBuilt(UWorldStreamChunkLoad* Load)
{
	LoadsInFlight.Remove(Load);
	if (!Session) return;
	const ws::ChunkKey CKey = ws::ChunkKey::parse(ToS(Load->Key));
	if (!Load->ChunkMesh)
	{
		Session->residency().on_failed(CKey, Load->Ticket);
		OnError.Broadcast(TEXT("glTFRuntime could not build chunk ") + Load->Key);
		PumpSession();
		return;
	}
	if (!Session->residency().on_ready(CKey, Load->Ticket)) return;  // unloaded or re-sent meanwhile: drop it
	FActorSpawnParameters Params;
	Params.SpawnCollisionHandlingOverride = ESpawnActorCollisionHandlingMethod::AlwaysSpawn;
	AStaticMeshActor* Actor = GetWorld()->SpawnActor<AStaticMeshActor>(Load->Location, FRotator::ZeroRotator, Params);
	Actor->SetMobility(EComponentMobility::Movable);
	Actor->GetStaticMeshComponent()->SetStaticMesh(Load->ChunkMesh);
	Actor->GetStaticMeshComponent()->SetCollisionProfileName(UCollisionProfile::BlockAll_ProfileName);
	for (const FWorldStreamTreeBatch& Batch : Load->Trees)  // one instanced component per tree kind
	{
		if (!Batch.Mesh)
		{
			OnError.Broadcast(FString::Printf(TEXT("glTFRuntime could not build %s of chunk %s"), *Batch.Name, *Load->Key));
			continue;
		}
		UInstancedStaticMeshComponent* Trees = NewObject<UInstancedStaticMeshComponent>(Actor);
		Trees->SetMobility(EComponentMobility::Movable);
		Trees->SetupAttachment(Actor->GetRootComponent());
		Trees->SetRelativeTransform(Batch.NodeTransform);
		Trees->SetStaticMesh(Batch.Mesh);
		Trees->SetCollisionProfileName(UCollisionProfile::BlockAll_ProfileName);
		Trees->RegisterComponent();
		Trees->AddInstances(Batch.Instances, false);
		Actor->AddInstanceComponent(Trees);
	}
#if WITH_EDITOR
	Actor->SetActorLabel(TEXT("WorldStream ") + Load->Key);
#endif
	Actors.Add(Load->Key, Actor);
	OnChunkLoaded.Broadcast(Load->Key, Actor);
	PumpSession();  // releases what this chunk replaced
	UpdateVisibility();
}

void UWorldStreamSubsystem::DestroyChunk(const FString& Key)
{
	TObjectPtr<AStaticMeshActor> Actor;
	if (!Actors.RemoveAndCopyValue(Key, Actor)) return;
	++Stats.Unloaded;
	OnChunkUnloaded.Broadcast(Key, Actor);
	if (Actor) Actor->Destroy();
}

void UWorldStreamSubsystem::UpdateVisibility()
{
	// REPLACE: draw (and collide with) only the chunks the core says are shown
	TSet<FString> Shown;
	for (const ws::ChunkKey& Key : Session->residency().shown()) Shown.Add(ToF(Key.path()));
	for (auto& Pair : Actors)
	{
		const bool bShow = Shown.Contains(Pair.Key);
		Pair.Value->SetActorHiddenInGame(!bShow);
		Pair.Value->SetActorEnableCollision(bShow);
	}
	Stats.Drawn = Shown.Num();
}

void UWorldStreamSubsystem::SendView()
{
	FVector Location;
	FRotator Rotation;
	float FovDeg = 90.f;
	if (ViewSource)
	{
		FMinimalViewInfo View;  // FOV 90 unless the actor has an active camera component
		ViewSource->CalcCamera(0.f, View);
		Location = View.Location;
		Rotation = View.Rotation;
		FovDeg = View.FOV;
	}
	else if (APlayerCameraManager* Cam = UGameplayStatics::GetPlayerCameraManager(GetWorld(), 0))
	{
		Location = Cam->GetCameraLocation();
		Rotation = Cam->GetCameraRotation();
		FovDeg = Cam->GetFOVAngle();
	}
	else return;

	if (RebaseDistanceM > 0)  // far flights: move Unreal's origin under the camera, by whole steps
	{
		const std::array<int64_t, 3> Old = Mapper->world_origin_cm();
		if (auto Origin = Mapper->rebase_if_far(ToV(Location), RebaseDistanceM, RebaseStepM))
		{
			// UWorld shifts every actor (chunks, PlayerStart, vehicles) by -(new - old); the mapper knows the new origin
			GetWorld()->SetNewWorldOrigin(FIntVector((int32)(*Origin)[0], (int32)(*Origin)[1], (int32)(*Origin)[2]));
			Location -= FVector(double((*Origin)[0] - Old[0]), double((*Origin)[1] - Old[1]), double((*Origin)[2] - Old[2]));
		}
	}
	FIntPoint Size = Viewport;
	if ((Size.X <= 0 || Size.Y <= 0) && GEngine && GEngine->GameViewport) { FVector2D V; GEngine->GameViewport->GetViewportSize(V); Size = FIntPoint(V.X, V.Y); }
	if (Size.X <= 0 || Size.Y <= 0) Size = FIntPoint(1920, 1080);

	const FRotationMatrix M(Rotation);
	const ws::EnuPose Pose = ws::enu_pose_from_unreal_axes(Mapper->to_enu(ToV(Location)), ToV(M.GetUnitAxis(EAxis::X)), ToV(M.GetUnitAxis(EAxis::Z)));
	ws::CameraView Cam;
	Cam.id = "main";
	Cam.frame = "enu";
	Cam.position = {Pose.position.x, Pose.position.y, Pose.position.z};
	Cam.orientation = {Pose.orientation.w, Pose.orientation.x, Pose.orientation.y, Pose.orientation.z};
	Cam.fov_deg = FMath::Clamp(FovDeg, 1.f, 170.f);
	Cam.viewport = {FMath::Clamp(Size.X, 1, 16384), FMath::Clamp(Size.Y, 1, 16384)};
	Cam.max_sse = FMath::Clamp(MaxScreenSpaceError, 0.5f, 1000.f);
	SendText(Session->view_text({Cam}));
	++Stats.ViewsSent;
}

FVector UWorldStreamSubsystem::EnuToUnreal(const FVector& Enu) const
{
	return Mapper ? ToF(Mapper->to_unreal(ToV(Enu))) : ToF(ws::enu_to_unreal_cm(ToV(Enu)));
}

FVector UWorldStreamSubsystem::UnrealToEnu(const FVector& UnrealCm) const
{
	return Mapper ? ToF(Mapper->to_enu(ToV(UnrealCm))) : ToF(ws::unreal_cm_to_enu(ToV(UnrealCm)));
}
