"""Ray Serve deployment of the runtime: `AvatarService` replicas behind the project's own
gRPC and ZeroMQ front ends, which clients keep talking to unchanged.

    deployment = RayDeployment(ServeSettings("avatar_store", replicas=2))
    handlers = RuntimeHandlers(deployment.service, limits)   # both servers, as without Ray
    ...
    deployment.close()

Each replica (`AvatarReplica`) holds an `AvatarService` on one shared store
(`SharedAvatarStore`: every replica sees the others' creates, updates and deletes). A call
about an avatar carries its id as Serve's multiplexed model id, so the router sends it to a
replica that already holds the avatar's renderer (`AvatarReplica.hold`, LRU per replica);
a create is routed by the id it will get (a content hash), so the replica that builds an
avatar is the one its frames go to next.

Drive sessions stay in the front end (`RuntimeHandlers.drive` and its `DriveInbox`): each
frame is one call to the replica owning the avatar, so at most one frame per session is in
flight, replies come back in order, and frames that arrive meanwhile are replaced
(latest-wins) in the front end, never queued. A call whose replica dies is retried on
another replica (every call but delete is idempotent); what still fails, times out or finds
the deployment's queue full is a clear error (UNAVAILABLE, RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, RequestCancelledError

from avatar_runtime.errors import AvatarError, AvatarNotFound, InvalidArgument, LimitExceeded, Unavailable
from avatar_runtime.limits import Limits
from avatar_runtime.service import avatar_id_for, check_camera
from avatar_runtime.store.avatar_store import check_id

log = logging.getLogger(__name__)
APP_NAME = "avatar-runtime"
AVATARS_PER_REPLICA = 8  # renderers a replica keeps (AvatarService's renderer_cache)
CALL_TIMEOUT_S = 60.0
CREATE_TIMEOUT_S = 300.0  # a portrait4d create on a loaded CPU takes tens of seconds
RETRIES = 2  # a call whose replica died goes to another one this many times
RETRY_PAUSE_S = 0.25
# The methods of AvatarService a replica runs for the front end.
REMOTE_METHODS = frozenset({"get", "list", "delete", "render", "solve_motion", "solve_landmarks",
                            "calibrate_neutral", "reset_neutral", "motion_from_code", "export_mesh",
                            "store_ok"})


@dataclass(frozen=True)
class ServeSettings:
    """How the deployment runs: replicas, their resources, the shared store."""

    data_dir: Path | str
    """The avatar store every replica opens: on several machines, a folder all of them mount."""
    replicas: int = 2
    max_replicas: int | None = None
    """More than `replicas`: Serve autoscales between the two on ongoing requests."""
    replica_cpus: float = 0.5
    replica_gpus: float | None = None
    """GPUs per replica; None: 1 when the cluster has GPUs, else 0."""
    limits: Limits = field(default_factory=Limits)
    portrait4d_weights: Path | str | None = None
    calibrate_after_create: bool = True
    max_ongoing_requests: int = 8
    """Calls one replica runs at once (each drive session has at most one in flight)."""
    max_queued_requests: int = 64
    """Calls waiting for a replica, all front-end threads together; beyond: RESOURCE_EXHAUSTED."""
    target_ongoing_requests: float = 2.0
    app_name: str = APP_NAME

    def __post_init__(self):
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be at least "
                             f"replicas ({self.replicas})")

    def deployment_options(self, cluster_gpus: float) -> dict:
        """Serve options of `AvatarReplica`: resources, queue bounds, fixed or autoscaled."""
        gpus = self.replica_gpus if self.replica_gpus is not None else (1.0 if cluster_gpus >= 1 else 0.0)
        options = {"ray_actor_options": {"num_cpus": self.replica_cpus, "num_gpus": gpus},
                   "max_ongoing_requests": self.max_ongoing_requests,
                   "max_queued_requests": self.max_queued_requests,
                   "health_check_period_s": 2.0, "health_check_timeout_s": 30.0}
        if self.max_replicas and self.max_replicas > self.replicas:
            options["autoscaling_config"] = {"min_replicas": self.replicas,
                                             "initial_replicas": self.replicas,
                                             "max_replicas": self.max_replicas,
                                             "target_ongoing_requests": self.target_ongoing_requests}
        else:
            options["num_replicas"] = self.replicas
        return options


@serve.deployment
class AvatarReplica:
    """One `AvatarService` on the shared store; calls arrive from `ServeAvatarService`."""

    def __init__(self, data_dir: str, limits: Limits, service_options: dict):
        from avatar_runtime.service import AvatarService
        from avatar_runtime.store.shared_store import SharedAvatarStore

        store = SharedAvatarStore(data_dir, max_avatars=limits.max_avatars)
        self.service = AvatarService(data_dir, limits, store=store, renderer_cache=AVATARS_PER_REPLICA,
                                     **service_options)
        self.service.warm_up()

    @serve.multiplexed(max_num_models_per_replica=AVATARS_PER_REPLICA)
    async def hold(self, avatar_id: str) -> str:
        """Load the avatar's renderer; Serve then routes the avatar's calls here."""
        await asyncio.to_thread(self.service.prepare, avatar_id)
        return avatar_id

    async def call(self, method: str, *args, **kwargs) -> Any:
        if method not in REMOTE_METHODS:
            raise InvalidArgument(f"{method!r} is not a runtime call")
        avatar_id = serve.get_multiplexed_model_id()
        # Every call about an avatar loads it (a Drive header's get warms the renderer up
        # before the first frame); a delete need not.
        if avatar_id and method != "delete":
            if check_id(avatar_id) not in self.service.store:  # deleted through another replica
                self.service.forget(avatar_id)
                raise AvatarNotFound(f"no avatar with id {avatar_id!r}")
            await self.hold(avatar_id)
        return await asyncio.to_thread(getattr(self.service, method), *args, **kwargs)

    async def create(self, image: bytes, name: str, reconstructor: str, more_images=(), video: bytes = b"",
                     refine: str = ""):
        """Streams ("progress", stage, fraction) events, then ("avatar", summary)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def progress(stage: str, fraction: float) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("progress", stage, fraction))

        work = asyncio.ensure_future(asyncio.to_thread(self.service.create, image, name, reconstructor,
                                                       progress, more_images, video, refine))
        while not (work.done() and events.empty()):
            event = asyncio.ensure_future(events.get())
            await asyncio.wait({event, work}, return_when=asyncio.FIRST_COMPLETED)
            if event.done():
                yield event.result()
            else:
                event.cancel()
        summary = work.result()
        await self.hold(summary["id"])  # its first frames should not wait for the renderer
        yield ("avatar", summary)

    async def replica_name(self) -> str:
        return ray.get_runtime_context().get_actor_name()


class _StoreSize:
    """`len(service.store)` (the avatars gauge) for a store that lives in the replicas."""

    def __init__(self, service: "ServeAvatarService"):
        self._service = service

    def __len__(self) -> int:
        return len(self._service.list())


class ServeAvatarService:
    """The `AvatarService` interface that `RuntimeHandlers` uses, forwarded to the deployment."""

    def __init__(self, handle, limits: Limits = Limits(), timeout_s: float = CALL_TIMEOUT_S):
        self.handle = handle
        self.limits = limits
        self.timeout_s = timeout_s
        self.store = _StoreSize(self)
        self.calls_retried = 0  # calls sent again because their replica died

    # -- avatars -----------------------------------------------------------------------
    def create(self, image: bytes, name: str = "", reconstructor: str = "fit",
               progress: Callable[[str, float], None] = lambda stage, fraction: None,
               more_images=(), video: bytes = b"", refine: str = "") -> dict:
        image, more_images, video = bytes(image), [bytes(b) for b in more_images], bytes(video)
        # Routed where the avatar will live.
        future_id = avatar_id_for(image, reconstructor + (f"+{refine}" if refine else ""), name,
                                  more_images, video)
        routed = self.handle.options(stream=True, multiplexed_model_id=future_id)

        def attempt() -> dict:
            stream = routed.create.remote(image, name, reconstructor, more_images, video, refine)
            watchdog = threading.Timer(CREATE_TIMEOUT_S, stream.cancel)  # a stream has no timeout
            watchdog.daemon = True
            watchdog.start()
            try:
                for kind, *rest in stream:
                    if kind == "progress":
                        progress(*rest)
                    else:
                        return rest[0]
            except RequestCancelledError as exc:
                raise Unavailable(f"no replica finished the create within {CREATE_TIMEOUT_S:g} s") from exc
            finally:
                watchdog.cancel()
            raise Unavailable("the replica ended the create without an avatar")

        return self._retrying("create", attempt)

    def get(self, avatar_id: str) -> dict:
        return self._call(avatar_id, "get", avatar_id)

    def list(self) -> list[dict]:
        return self._call(None, "list")

    def delete(self, avatar_id: str) -> None:
        # Not retried: a replica that died after deleting would make a retry NOT_FOUND.
        self._call(avatar_id, "delete", avatar_id, retries=0)

    # -- motion + rendering ------------------------------------------------------------
    def render(self, avatar_id: str, motion=None, camera=None, depth: bool = True, normals: bool = True):
        return self._call(avatar_id, "render", avatar_id, motion, camera, depth, normals)

    def solve_motion(self, image: bytes, avatar_id: str | None = None, sequence: int = 0,
                     timecode: float = 0.0):
        return self._call(avatar_id, "solve_motion", bytes(image), avatar_id, sequence, timecode)

    def solve_landmarks(self, avatar_id: str, landmarks, width: int, height: int, sequence: int = 0,
                        timecode: float = 0.0):
        return self._call(avatar_id, "solve_landmarks", avatar_id, landmarks, width, height,
                          sequence, timecode)

    def calibrate_neutral(self, avatar_id: str, image: bytes | None = None, landmarks=None,
                          width: int = 0, height: int = 0):
        return self._call(avatar_id, "calibrate_neutral", avatar_id, image, landmarks, width, height)

    def reset_neutral(self, avatar_id: str) -> None:
        self._call(avatar_id, "reset_neutral", avatar_id)

    def motion_from_code(self, avatar_id: str, code, sequence: int = 0, timecode: float = 0.0):
        return self._call(avatar_id, "motion_from_code", avatar_id, code, sequence, timecode)

    def export_mesh(self, avatar_id: str, format: str = "glb", expression=None,
                    source: str = "mesh") -> dict[str, bytes]:
        return self._call(avatar_id, "export_mesh", avatar_id, format, expression, source)

    # -- checks and operations ---------------------------------------------------------
    def check_camera(self, camera) -> None:
        check_camera(camera, self.limits)  # no round trip: it needs only the limits

    def store_ok(self) -> bool:
        return self._call(None, "store_ok")

    def warm_up(self) -> None:
        """Replicas warm up as they start; this waits until one answers."""
        self.store_ok()

    def replica_for(self, avatar_id: str) -> str:
        """The actor name of the replica the avatar's calls go to now."""
        routed = self.handle.options(multiplexed_model_id=check_id(avatar_id))
        return self._retrying("replica_name", lambda: routed.replica_name.remote().result(
            timeout_s=self.timeout_s))

    # -- plumbing ----------------------------------------------------------------------
    def _call(self, avatar_id: str | None, method: str, *args, retries: int = RETRIES) -> Any:
        handle = self.handle.options(multiplexed_model_id=check_id(avatar_id)) if avatar_id else self.handle
        return self._retrying(method, lambda: handle.call.remote(method, *args).result(
            timeout_s=self.timeout_s), retries)

    def _retrying(self, method: str, attempt: Callable[[], Any], retries: int = RETRIES) -> Any:
        """Run `attempt`, again on another replica when its replica died; Ray's errors
        become the runtime's (an error raised in a replica comes back as itself)."""
        for tries_left in range(retries, -1, -1):
            try:
                return attempt()
            except RayTaskError as exc:
                if isinstance(exc.cause, AvatarError):
                    raise exc.cause from None
                raise
            except RayActorError as exc:
                if not tries_left:
                    raise Unavailable(f"the replica serving {method} died and no other answered; "
                                      "retry once the deployment has replaced it") from exc
                self.calls_retried += 1
                log.warning("a replica died during %s; sending it to another one", method)
                time.sleep(RETRY_PAUSE_S)
            except BackPressureError as exc:
                raise LimitExceeded("every replica is busy and the deployment's queue is full "
                                    "(limit max_queued_requests); retry later") from exc
            except TimeoutError as exc:
                raise Unavailable(f"no replica answered {method} within {self.timeout_s:g} s") from exc
        raise AssertionError("unreachable")


class RayDeployment:
    """The runtime on a Ray cluster: connects (or starts a local cluster), runs the Serve
    application, and offers `service`, the object the front ends call."""

    def __init__(self, settings: ServeSettings, address: str | None = None, num_cpus: int | None = None,
                 log_to_driver: bool = True):
        """address: an existing cluster ("auto", "HOST:PORT", "ray://HOST:10001"); None starts
        a local one with `num_cpus` (default: every core) and no dashboard."""
        self.settings = settings
        self._owns_cluster = address is None
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     log_to_driver=log_to_driver)
        else:
            ray.init(address=address, log_to_driver=log_to_driver)
        try:
            self.address = ray.get_runtime_context().gcs_address
            serve.start(proxy_location="Disabled")  # calls come through handles only: no HTTP port
            options = settings.deployment_options(ray.cluster_resources().get("GPU", 0.0))
            service_options = {"portrait4d_weights": settings.portrait4d_weights,
                               "calibrate_after_create": settings.calibrate_after_create}
            app = AvatarReplica.options(**options).bind(str(Path(settings.data_dir).resolve()),
                                                        settings.limits, service_options)
            handle = serve.run(app, name=settings.app_name, route_prefix=None)
        except BaseException:
            self.close()
            raise
        self.service = ServeAvatarService(handle, settings.limits)

    def replica_names(self) -> list[str]:
        """Actor names of the replicas alive now (starting ones included)."""
        prefix = f"SERVE_REPLICA::{self.settings.app_name}#"
        return sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
                      if actor["name"].startswith(prefix))

    def running_replicas(self) -> int:
        """Replicas Serve reports as RUNNING (serving calls)."""
        app = serve.status().applications.get(self.settings.app_name)
        deployment = app.deployments.get(AvatarReplica.name) if app else None
        return deployment.replica_states.get("RUNNING", 0) if deployment else 0

    def close(self) -> None:
        """Remove the application; stop the cluster if this process started it."""
        try:
            if self._owns_cluster:
                serve.shutdown()
            else:
                serve.delete(self.settings.app_name)
        except Exception:  # noqa: BLE001 - closing a half-started deployment
            log.warning("could not remove the Serve application", exc_info=True)
        ray.shutdown()
