"""Add-on preferences: where the runtime is and how to talk to it."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from .client import Settings


class AVATAR_RUNTIME_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    address: StringProperty(
        name="Server Address",
        description="ZeroMQ endpoint of `avatar-runtime serve` (its --zmq address)",
        default="tcp://127.0.0.1:5555",
    )
    transport: EnumProperty(
        name="Transport",
        description="How the add-on talks to the runtime",
        items=[("ZMQ", "ZeroMQ", "msgpack requests on the runtime's ROUTER socket")],
        default="ZMQ",
    )
    token: StringProperty(
        name="Token",
        description="Bearer token, when the runtime was started with --token",
        subtype="PASSWORD",
        default="",
    )
    timeout: FloatProperty(
        name="Response Timeout",
        description="Seconds of server silence after which a call fails",
        default=1.5, min=0.3, max=60.0, unit="TIME_ABSOLUTE",
    )
    solve_window: IntProperty(
        name="Frames in Flight",
        description="Video frames being solved on the runtime at once. More helps only when "
                    "the runtime has cores to spare (on 2 cores, 1 is fastest)",
        default=1, min=1, max=8,
    )
    max_frame_side: IntProperty(
        name="Max Frame Size",
        description="Video frames larger than this (pixels, longer side) are scaled down "
                    "before they are sent",
        default=720, min=64, max=8192,
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "transport")
        layout.prop(self, "address")
        layout.prop(self, "token")
        layout.prop(self, "timeout")
        layout.prop(self, "solve_window")
        layout.prop(self, "max_frame_side")

    def settings(self) -> Settings:
        return Settings(address=self.address.strip(), token=self.token, liveness_s=self.timeout)


def get(context: bpy.types.Context) -> AVATAR_RUNTIME_AP_preferences:
    """This add-on's preferences."""
    return context.preferences.addons[__package__].preferences
