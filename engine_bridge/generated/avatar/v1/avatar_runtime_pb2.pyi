from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_RAW: _ClassVar[Encoding]
    ENCODING_PNG: _ClassVar[Encoding]
    ENCODING_JPEG: _ClassVar[Encoding]
ENCODING_RAW: Encoding
ENCODING_PNG: Encoding
ENCODING_JPEG: Encoding

class Camera(_message.Message):
    __slots__ = ("c2w", "fov_y_deg", "width", "height")
    C2W_FIELD_NUMBER: _ClassVar[int]
    FOV_Y_DEG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    c2w: _containers.RepeatedScalarFieldContainer[float]
    fov_y_deg: float
    width: int
    height: int
    def __init__(self, c2w: _Optional[_Iterable[float]] = ..., fov_y_deg: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Landmarks(_message.Message):
    __slots__ = ("xyz", "width", "height")
    XYZ_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    xyz: _containers.RepeatedScalarFieldContainer[float]
    width: int
    height: int
    def __init__(self, xyz: _Optional[_Iterable[float]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class MotionFrame(_message.Message):
    __slots__ = ("arkit", "head_rotation", "head_translation", "eye_gaze", "sequence", "timecode", "image", "landmarks", "embedding")
    ARKIT_FIELD_NUMBER: _ClassVar[int]
    HEAD_ROTATION_FIELD_NUMBER: _ClassVar[int]
    HEAD_TRANSLATION_FIELD_NUMBER: _ClassVar[int]
    EYE_GAZE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMECODE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    arkit: _containers.RepeatedScalarFieldContainer[float]
    head_rotation: _containers.RepeatedScalarFieldContainer[float]
    head_translation: _containers.RepeatedScalarFieldContainer[float]
    eye_gaze: _containers.RepeatedScalarFieldContainer[float]
    sequence: int
    timecode: float
    image: bytes
    landmarks: Landmarks
    embedding: Embedding
    def __init__(self, arkit: _Optional[_Iterable[float]] = ..., head_rotation: _Optional[_Iterable[float]] = ..., head_translation: _Optional[_Iterable[float]] = ..., eye_gaze: _Optional[_Iterable[float]] = ..., sequence: _Optional[int] = ..., timecode: _Optional[float] = ..., image: _Optional[bytes] = ..., landmarks: _Optional[_Union[Landmarks, _Mapping]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("sequence", "timecode", "width", "height", "encoding", "rgba", "alpha", "depth", "normals", "render_ms", "encode_ms")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMECODE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    RGBA_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    NORMALS_FIELD_NUMBER: _ClassVar[int]
    RENDER_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    timecode: float
    width: int
    height: int
    encoding: Encoding
    rgba: bytes
    alpha: bytes
    depth: bytes
    normals: bytes
    render_ms: float
    encode_ms: float
    def __init__(self, sequence: _Optional[int] = ..., timecode: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., rgba: _Optional[bytes] = ..., alpha: _Optional[bytes] = ..., depth: _Optional[bytes] = ..., normals: _Optional[bytes] = ..., render_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ...) -> None: ...

class Smoothing(_message.Message):
    __slots__ = ("enabled", "min_cutoff", "beta")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MIN_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    min_cutoff: float
    beta: float
    def __init__(self, enabled: bool = ..., min_cutoff: _Optional[float] = ..., beta: _Optional[float] = ...) -> None: ...

class Avatar(_message.Message):
    __slots__ = ("id", "name", "reconstructor", "created_at", "meta_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    reconstructor: str
    created_at: float
    meta_json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., reconstructor: _Optional[str] = ..., created_at: _Optional[float] = ..., meta_json: _Optional[str] = ...) -> None: ...

class CreateAvatarRequest(_message.Message):
    __slots__ = ("image", "name", "reconstructor", "more_images", "video", "refine")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTOR_FIELD_NUMBER: _ClassVar[int]
    MORE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    name: str
    reconstructor: str
    more_images: _containers.RepeatedScalarFieldContainer[bytes]
    video: bytes
    refine: str
    def __init__(self, image: _Optional[bytes] = ..., name: _Optional[str] = ..., reconstructor: _Optional[str] = ..., more_images: _Optional[_Iterable[bytes]] = ..., video: _Optional[bytes] = ..., refine: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class CreateAvatarEvent(_message.Message):
    __slots__ = ("progress", "avatar")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    AVATAR_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    avatar: Avatar
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., avatar: _Optional[_Union[Avatar, _Mapping]] = ...) -> None: ...

class GetAvatarRequest(_message.Message):
    __slots__ = ("avatar_id",)
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    def __init__(self, avatar_id: _Optional[str] = ...) -> None: ...

class ListAvatarsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAvatarsResponse(_message.Message):
    __slots__ = ("avatars",)
    AVATARS_FIELD_NUMBER: _ClassVar[int]
    avatars: _containers.RepeatedCompositeFieldContainer[Avatar]
    def __init__(self, avatars: _Optional[_Iterable[_Union[Avatar, _Mapping]]] = ...) -> None: ...

class DeleteAvatarRequest(_message.Message):
    __slots__ = ("avatar_id",)
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    def __init__(self, avatar_id: _Optional[str] = ...) -> None: ...

class DeleteAvatarResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenderOptions(_message.Message):
    __slots__ = ("encoding", "depth", "normals", "jpeg_quality")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    NORMALS_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    encoding: Encoding
    depth: bool
    normals: bool
    jpeg_quality: int
    def __init__(self, encoding: _Optional[_Union[Encoding, str]] = ..., depth: bool = ..., normals: bool = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class RenderFrameRequest(_message.Message):
    __slots__ = ("avatar_id", "motion", "camera", "options")
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    motion: MotionFrame
    camera: Camera
    options: RenderOptions
    def __init__(self, avatar_id: _Optional[str] = ..., motion: _Optional[_Union[MotionFrame, _Mapping]] = ..., camera: _Optional[_Union[Camera, _Mapping]] = ..., options: _Optional[_Union[RenderOptions, _Mapping]] = ...) -> None: ...

class DriveHeader(_message.Message):
    __slots__ = ("avatar_id", "camera", "options", "smoothing")
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    camera: Camera
    options: RenderOptions
    smoothing: Smoothing
    def __init__(self, avatar_id: _Optional[str] = ..., camera: _Optional[_Union[Camera, _Mapping]] = ..., options: _Optional[_Union[RenderOptions, _Mapping]] = ..., smoothing: _Optional[_Union[Smoothing, _Mapping]] = ...) -> None: ...

class DriveEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DriveRequest(_message.Message):
    __slots__ = ("header", "frame", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: DriveHeader
    frame: MotionFrame
    end: DriveEnd
    def __init__(self, header: _Optional[_Union[DriveHeader, _Mapping]] = ..., frame: _Optional[_Union[MotionFrame, _Mapping]] = ..., end: _Optional[_Union[DriveEnd, _Mapping]] = ...) -> None: ...

class DriveStarted(_message.Message):
    __slots__ = ("session_id", "avatar_id", "width", "height", "encoding", "max_fps")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    MAX_FPS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    avatar_id: str
    width: int
    height: int
    encoding: Encoding
    max_fps: float
    def __init__(self, session_id: _Optional[str] = ..., avatar_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., max_fps: _Optional[float] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("sequence", "code", "message")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    code: str
    message: str
    def __init__(self, sequence: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DriveStatus(_message.Message):
    __slots__ = ("frames_received", "frames_rendered", "frames_dropped", "elapsed_s")
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RENDERED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    frames_received: int
    frames_rendered: int
    frames_dropped: int
    elapsed_s: float
    def __init__(self, frames_received: _Optional[int] = ..., frames_rendered: _Optional[int] = ..., frames_dropped: _Optional[int] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class DriveResponse(_message.Message):
    __slots__ = ("header", "frame", "status", "error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    header: DriveStarted
    frame: Frame
    status: DriveStatus
    error: FrameError
    def __init__(self, header: _Optional[_Union[DriveStarted, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., status: _Optional[_Union[DriveStatus, _Mapping]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...

class SolveMotionRequest(_message.Message):
    __slots__ = ("image", "avatar_id", "sequence", "timecode")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMECODE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    avatar_id: str
    sequence: int
    timecode: float
    def __init__(self, image: _Optional[bytes] = ..., avatar_id: _Optional[str] = ..., sequence: _Optional[int] = ..., timecode: _Optional[float] = ...) -> None: ...

class CalibrateNeutralRequest(_message.Message):
    __slots__ = ("avatar_id", "neutral", "reset")
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    neutral: MotionFrame
    reset: bool
    def __init__(self, avatar_id: _Optional[str] = ..., neutral: _Optional[_Union[MotionFrame, _Mapping]] = ..., reset: bool = ...) -> None: ...

class ExportMeshRequest(_message.Message):
    __slots__ = ("avatar_id", "motion", "chunk_bytes", "format", "source")
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    motion: MotionFrame
    chunk_bytes: int
    format: str
    source: str
    def __init__(self, avatar_id: _Optional[str] = ..., motion: _Optional[_Union[MotionFrame, _Mapping]] = ..., chunk_bytes: _Optional[int] = ..., format: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class MeshChunk(_message.Message):
    __slots__ = ("data", "offset", "total_bytes", "mime_type", "file_name", "sha256", "last")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_bytes: int
    mime_type: str
    file_name: str
    sha256: str
    last: bool
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_bytes: _Optional[int] = ..., mime_type: _Optional[str] = ..., file_name: _Optional[str] = ..., sha256: _Optional[str] = ..., last: bool = ...) -> None: ...
