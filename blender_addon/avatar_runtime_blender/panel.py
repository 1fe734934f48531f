"""The sidebar panel (3D Viewport > Sidebar > Avatar)."""

from __future__ import annotations

import bpy

from . import browser, ops, prefs


class AVATAR_RUNTIME_PT_main(bpy.types.Panel):
    bl_label = "Avatar Runtime"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar"

    def draw(self, context):
        layout = self.layout
        state = ops.STATE
        settings = prefs.get(context)

        box = layout.box()
        row = box.row()
        icon = {True: "CHECKMARK", False: "ERROR"}.get(state.connected, "QUESTION")
        row.label(text=state.connection, icon=icon)
        row.operator(ops.AVATAR_RUNTIME_OT_check_connection.bl_idname, text="", icon="FILE_REFRESH")
        transport = layout.enum_item_name(settings, "transport", settings.transport)
        box.label(text=f"{transport} {settings.address}", icon="LINKED")

        if "create" in state.tasks:
            stage, fraction = state.progress.get("create", ("starting", 0.0))
            row = layout.row(align=True)
            row.progress(factor=fraction, type="BAR", text=f"Creating: {stage} {fraction:.0%}")
            cancel = row.operator(ops.AVATAR_RUNTIME_OT_cancel_task.bl_idname, text="", icon="CANCEL")
            cancel.task = "create"
        else:
            layout.operator(ops.AVATAR_RUNTIME_OT_create_avatar.bl_idname, icon="USER")

        box = layout.box()
        row = box.row()
        row.label(text="Runtime avatars", icon="COMMUNITY")
        row.operator(browser.AVATAR_RUNTIME_OT_refresh_avatars.bl_idname, text="", icon="FILE_REFRESH")
        box.template_list(browser.AVATAR_RUNTIME_UL_avatars.__name__, "", context.window_manager,
                          "avatar_runtime_avatars", context.window_manager, "avatar_runtime_avatar_index",
                          rows=3)
        box.operator(browser.AVATAR_RUNTIME_OT_import_avatar.bl_idname, icon="IMPORT")

        rig = ops.find_rig(context)
        col = layout.column(align=True)
        col.label(text=f"Avatar: {rig.armature.name}" if rig else "Avatar: none (create one)")
        if state.drive is None:
            col.operator(ops.AVATAR_RUNTIME_OT_drive.bl_idname, icon="PLAY")
        else:
            col.operator(ops.AVATAR_RUNTIME_OT_stop_drive.bl_idname, icon="SNAP_FACE")
        col.operator(ops.AVATAR_RUNTIME_OT_bake.bl_idname, icon="KEYINGSET")

        box = col.box()
        box.label(text=ops.neutral_hint(context), icon="USER")
        row = box.row(align=True)
        row.operator(ops.AVATAR_RUNTIME_OT_calibrate_neutral.bl_idname, text="Calibrate Neutral",
                     icon="EYEDROPPER").source = "FOOTAGE"
        row.operator(ops.AVATAR_RUNTIME_OT_calibrate_neutral.bl_idname, text="",
                     icon="FILE_IMAGE").source = "FILE"
        row.operator(ops.AVATAR_RUNTIME_OT_reset_neutral.bl_idname, text="", icon="LOOP_BACK")
        col.operator(ops.AVATAR_RUNTIME_OT_render_from_server.bl_idname, icon="RENDER_STILL")

        if state.activity:
            layout.label(text=state.activity, icon="INFO")
        if state.error:
            row = layout.row()
            row.alert = True
            row.label(text=state.error, icon="ERROR")
