"""Live Link Face over UDP: the runtime as a sender and as a receiver (no Unreal plugin needed).

    avatar-runtime serve --livelink-out udp://127.0.0.1:11111
        Every frame rendered by any drive session (gRPC or ZeroMQ) is also sent as a Live Link
        Face packet (52 ARKit weights + head and eye angles) to that address, so a stock Unreal
        "Live Link Face" source picks it up. Subject = --livelink-subject, else the avatar's
        name (its id when it has none). Device id = --livelink-device-id, else a UUID made once
        per data dir and kept in DATA_DIR/livelink_device_id, so a runtime keeps its id across
        restarts (the app's device id is a UUID too, and some receivers rely on its length).

    avatar-runtime serve --livelink-in udp://127.0.0.1:11111 --livelink-avatar ID
        Packets from the Live Link Face app (pointed at this address) become motion frames. Every
        open drive session on avatar ID, from any client, is fed those frames (latest-wins, as if
        the client had sent them): open a session and send no frames to see the phone drive
        the avatar. Frames are numbered per packet; their timecode is the packet's frame time.

The packet codec is `avatar_runtime.motion.livelink_udp`; this module only moves datagrams.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from avatar_runtime.errors import AvatarError, InvalidArgument
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.livelink_udp import (DEFAULT_PORT, check_device_id, check_subject, decode_packet,
                                                encode_frame, fit_subject, new_device_id, packet_to_frame)

log = logging.getLogger(__name__)
MAX_DATAGRAM = 65535
LOG_EVERY_S = 10.0  # at most one warning per this many seconds for bad packets / send errors
DEVICE_ID_FILE = "livelink_device_id"


def parse_udp(address: str) -> tuple[str, int]:
    """'udp://HOST:PORT' (or 'HOST:PORT') -> (host, port); the port defaults to 11111."""
    parts = urlsplit(address if "://" in address else f"udp://{address}")
    if parts.scheme != "udp" or not parts.hostname:
        raise InvalidArgument(f"Live Link address must look like udp://HOST:PORT, got {address!r}")
    try:
        port = parts.port if parts.port is not None else DEFAULT_PORT
    except ValueError:
        raise InvalidArgument(f"bad port in Live Link address {address!r}") from None
    return parts.hostname, port


class _Throttled:
    """Logs a warning at most every LOG_EVERY_S seconds (a live stream must not flood the log)."""

    def __init__(self) -> None:
        self._last = 0.0

    def warn(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_S:
            self._last = now
            log.warning(message, *args)


def runtime_device_id(data_dir: Path | str) -> str:
    """This runtime's Live Link device id: read from DATA_DIR/livelink_device_id, or made once
    (a random UUID, `new_device_id`) and written there. A damaged file is replaced (logged);
    an unwritable data dir gives an id for this run only (logged)."""
    path = Path(data_dir) / DEVICE_ID_FILE
    try:
        return check_device_id(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, AvatarError) as exc:
        log.warning("replacing unreadable Live Link device id in %s: %s", path, exc)
    device_id = new_device_id()
    temp = path.with_name(f"{DEVICE_ID_FILE}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(device_id + "\n", encoding="ascii")
        os.replace(temp, path)
    except OSError as exc:
        log.warning("cannot keep the Live Link device id in %s (%s): it changes on restart", path, exc)
    return device_id


class LiveLinkSender:
    """Sends one Live Link Face packet per `send(avatar_id, frame)`; never raises on the network.

    Subject: `subject` when given, else `name_of(avatar_id)` (the avatar's name, looked up once
    per avatar and cut to the packet's limit), else the avatar id.
    """

    def __init__(self, address: str, device_id: str, subject: str | None = None,
                 name_of: Callable[[str], str | None] | None = None, fps: int = 60,
                 angle_unit: str = "radians"):
        self.target = parse_udp(address)
        self.device_id = check_device_id(device_id)
        self.subject = check_subject(subject) if subject is not None else None
        self.fps, self.angle_unit = fps, angle_unit
        self._name_of = name_of
        self._subjects: dict[str, str] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self._warn = _Throttled()

    def subject_for(self, avatar_id: str) -> str:
        """The subject name packets about `avatar_id` carry."""
        if self.subject:
            return self.subject
        subject = self._subjects.get(avatar_id)
        if subject is None:
            name = None
            if self._name_of is not None:
                try:
                    name = self._name_of(avatar_id)
                except AvatarError as exc:
                    self._warn.warn("no name for avatar %s (%s): using its id", avatar_id, exc.message)
            subject = fit_subject(name or "") or avatar_id
            if len(self._subjects) > 1000:
                self._subjects.clear()
            self._subjects[avatar_id] = subject
        return subject

    def send(self, avatar_id: str, frame: MotionFrame) -> None:
        data = encode_frame(frame, self.subject_for(avatar_id), self.device_id, self.fps, self.angle_unit)
        try:
            with self._lock:
                self._sock.sendto(data, self.target)
        except OSError as exc:
            self._warn.warn("Live Link send to %s:%d failed: %s", *self.target, exc)

    def close(self) -> None:
        self._sock.close()


class LiveLinkReceiver:
    """Receives Live Link Face packets on a thread; `on_frame(subject, frame)` gets each one."""

    def __init__(self, address: str, on_frame: Callable[[str, MotionFrame], None],
                 angle_unit: str = "radians"):
        host, port = parse_udp(address)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.address = "udp://%s:%d" % self._sock.getsockname()[:2]
        self.on_frame, self.angle_unit = on_frame, angle_unit
        self.received = 0
        self._sequences: dict[str, int] = {}
        self._stop = threading.Event()
        self._warn = _Throttled()
        self._thread = threading.Thread(target=self._loop, name="livelink-in", daemon=True)

    def start(self) -> "LiveLinkReceiver":
        self._thread.start()
        return self

    def stop(self, grace: float = 0.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            try:
                packet = decode_packet(data)
                sequence = self._sequences.get(packet.subject, 0)
                self._sequences[packet.subject] = sequence + 1
                frame = packet_to_frame(packet, sequence, self.angle_unit)
            except AvatarError as exc:
                self._warn.warn("ignoring a datagram from %s:%d: %s", *sender[:2], exc.message)
                continue
            self.received += 1
            try:
                self.on_frame(packet.subject, frame)
            except Exception:  # noqa: BLE001 - a consumer bug must not stop the receiver
                log.exception("Live Link frame handler failed")


# -- `avatar-runtime serve` options -----------------------------------------------------------
def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(text)
        except AvatarError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Live Link Face (UDP, no Unreal plugin needed)")
    group.add_argument("--livelink-out", metavar="udp://HOST:PORT",
                       help="send every rendered drive frame's motion as Live Link Face packets")
    group.add_argument("--livelink-subject", metavar="NAME", type=_checked(check_subject),
                       help="subject name of sent packets (default: the avatar's name, else its id)")
    group.add_argument("--livelink-device-id", metavar="UUID", type=_checked(check_device_id),
                       help="device id of sent packets, a 36-character UUID (default: one made once "
                            f"and kept in DATA_DIR/{DEVICE_ID_FILE})")
    group.add_argument("--livelink-in", metavar="udp://HOST:PORT",
                       help="receive Live Link Face packets as motion (needs --livelink-avatar)")
    group.add_argument("--livelink-avatar", metavar="ID",
                       help="avatar whose drive sessions are fed the received Live Link motion")
    group.add_argument("--livelink-angle-unit", default="radians",
                       choices=("radians", "normalized", "degrees"),
                       help="head/eye angle unit in packets, both directions (default: %(default)s)")


def start(handlers, args: argparse.Namespace) -> tuple[list[Callable[[float], None]], list[str]]:
    """Start what the options ask for; returns (stop functions, 'name=address' strings)."""
    stops: list[Callable[[float], None]] = []
    bound: list[str] = []
    if getattr(args, "livelink_out", None):
        device_id = args.livelink_device_id or runtime_device_id(args.data_dir)
        sender = LiveLinkSender(args.livelink_out, device_id, args.livelink_subject,
                                name_of=lambda avatar_id: handlers.service.get(avatar_id).get("name"),
                                angle_unit=args.livelink_angle_unit)
        handlers.add_frame_tap(sender.send)
        stops.append(lambda grace: sender.close())
        bound.append("livelink_out=udp://%s:%d" % sender.target)
        log.info("Live Link Face out: device id %s", sender.device_id)
    if getattr(args, "livelink_in", None):
        if not args.livelink_avatar:
            raise InvalidArgument("--livelink-in needs --livelink-avatar ID (the avatar it drives)")
        avatar_id = args.livelink_avatar
        receiver = LiveLinkReceiver(args.livelink_in,
                                    lambda subject, frame: handlers.feed_motion(avatar_id, frame),
                                    angle_unit=args.livelink_angle_unit).start()
        stops.append(receiver.stop)
        bound.append(f"livelink_in={receiver.address}")
    return stops, bound
