"""The sidebar panel (3D Viewport > Sidebar > Avatar)."""

from __future__ import annotations

import bpy

from . import ops, prefs


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

        layout.operator(ops.AVATAR_RUNTIME_OT_create_avatar.bl_idname, icon="USER")

        rig = ops.find_rig(context)
        col = layout.column(align=True)
        col.label(text=f"Avatar: {rig.armature.name}" if rig else "Avatar: none (create one)")
        if state.drive is None:
            col.operator(ops.AVATAR_RUNTIME_OT_drive.bl_idname, icon="PLAY")
        else:
            col.operator(ops.AVATAR_RUNTIME_OT_stop_drive.bl_idname, icon="SNAP_FACE")
        col.operator(ops.AVATAR_RUNTIME_OT_bake.bl_idname, icon="KEYINGSET")
        col.operator(ops.AVATAR_RUNTIME_OT_render_from_server.bl_idname, icon="RENDER_STILL")

        if state.activity:
            layout.label(text=state.activity, icon="INFO")
        if state.error:
            row = layout.row()
            row.alert = True
            row.label(text=state.error, icon="ERROR")
