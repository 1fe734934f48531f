"""avatar-runtime for Blender: photo -> rigged head, driven from video or Live Link Face takes.

A thin client of `avatar-runtime serve` over ZeroMQ. Protocol and format code lives in
modules that never import bpy (client, convert, motion, imaging, tasks, drive); Blender
glue in ops, browser, panel and prefs.
"""

import bpy

from . import browser, ops, panel, prefs

classes = (
    prefs.AVATAR_RUNTIME_AP_preferences,
    ops.AVATAR_RUNTIME_OT_report,
    ops.AVATAR_RUNTIME_OT_check_connection,
    ops.AVATAR_RUNTIME_OT_cancel_task,
    ops.AVATAR_RUNTIME_OT_create_avatar,
    *browser.classes,
    ops.AVATAR_RUNTIME_OT_drive,
    ops.AVATAR_RUNTIME_OT_stop_drive,
    ops.AVATAR_RUNTIME_OT_bake,
    ops.AVATAR_RUNTIME_OT_calibrate_neutral,
    ops.AVATAR_RUNTIME_OT_reset_neutral,
    ops.AVATAR_RUNTIME_OT_render_from_server,
    panel.AVATAR_RUNTIME_PT_main,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    browser.register_properties()
    bpy.app.handlers.load_pre.append(ops.stop_drive_on_load)


def unregister():
    bpy.app.handlers.load_pre.remove(ops.stop_drive_on_load)
    ops.shutdown()
    browser.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
