"""The avatar browser: the runtime's avatars with thumbnails, listed in the panel, imported on demand.

The list lives on the window manager (`avatar_runtime_avatars`), so it is not saved with the
.blend file; thumbnails are images rendered by the runtime (RenderFrame, its default portrait
camera) named `THUMBNAIL_PREFIX + id`, kept only while listed.
"""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from . import ops, prefs
from .client import Client, RenderedImage
from .imaging import rgba8_to_blender_pixels
from .tasks import Task

THUMBNAIL_SIZE = 96
THUMBNAIL_PREFIX = "Avatar Runtime thumbnail "
MAX_THUMBNAILS = 64  # rendered per refresh; more avatars are listed without one


class AVATAR_RUNTIME_PG_avatar(bpy.types.PropertyGroup):
    """One runtime avatar (`name` is the avatar's name)."""

    avatar_id: StringProperty(name="Avatar ID")
    reconstructor: StringProperty(name="Reconstructor")
    created_at: StringProperty(name="Created")


def avatars(context: bpy.types.Context):
    return context.window_manager.avatar_runtime_avatars


def thumbnail(avatar_id: str) -> bpy.types.Image | None:
    return bpy.data.images.get(THUMBNAIL_PREFIX + avatar_id)


class AVATAR_RUNTIME_UL_avatars(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0):
        image = thumbnail(item.avatar_id)
        icon_value = image.preview_ensure().icon_id if image is not None else 0
        text = f"{item.name}  ({item.avatar_id[:8]})"
        if icon_value:
            layout.label(text=text, icon_value=icon_value)
        else:
            layout.label(text=text, icon="USER")


def _store_list(context: bpy.types.Context, listed: list[dict], thumbs: dict[str, RenderedImage]) -> None:
    items = avatars(context)
    items.clear()
    for avatar in listed:
        item = items.add()
        item.name = str(avatar.get("name") or avatar["id"])
        item.avatar_id = str(avatar["id"])
        item.reconstructor = str(avatar.get("reconstructor", ""))
        item.created_at = f"{float(avatar.get('created_at', 0.0)):.0f}"
    wm = context.window_manager
    wm.avatar_runtime_avatar_index = min(max(wm.avatar_runtime_avatar_index, 0), max(len(items) - 1, 0))
    listed_ids = {str(a["id"]) for a in listed}
    for image in [i for i in bpy.data.images if i.name.startswith(THUMBNAIL_PREFIX)]:
        if image.name[len(THUMBNAIL_PREFIX):] not in listed_ids:
            bpy.data.images.remove(image)
    for avatar_id, frame in thumbs.items():
        image = thumbnail(avatar_id)
        if image is None:
            image = bpy.data.images.new(THUMBNAIL_PREFIX + avatar_id, frame.width, frame.height, alpha=True)
        elif tuple(image.size) != (frame.width, frame.height):
            image.scale(frame.width, frame.height)
        image.alpha_mode = "STRAIGHT"
        image.pixels.foreach_set(rgba8_to_blender_pixels(frame.rgba, frame.width, frame.height))
        image.update()
        image.preview_ensure().reload()


class AVATAR_RUNTIME_OT_refresh_avatars(bpy.types.Operator):
    """List the runtime's avatars, with a thumbnail of each rendered by the runtime"""

    bl_idname = "avatar_runtime.refresh_avatars"
    bl_label = "Refresh Avatar List"

    @classmethod
    def poll(cls, context):
        return "list" not in ops.STATE.tasks

    def execute(self, context):
        settings = prefs.get(context).settings()
        known = {item.avatar_id for item in avatars(context) if thumbnail(item.avatar_id) is not None}

        def work(task: Task) -> tuple[list[dict], dict[str, RenderedImage]]:
            with Client(settings) as client:
                listed = client.list_avatars()
                task.post(ops._mark_connected, settings)
                thumbs = {}
                for avatar in listed[-MAX_THUMBNAILS:]:  # the newest ones
                    if task.cancelled():
                        break
                    if avatar["id"] not in known:
                        thumbs[avatar["id"]] = client.render_frame(avatar["id"], [], 0.0, THUMBNAIL_SIZE,
                                                                   THUMBNAIL_SIZE)
                return listed, thumbs

        def done(result: tuple[list[dict], dict[str, RenderedImage]]) -> None:
            listed, thumbs = result
            _store_list(bpy.context, listed, thumbs)
            ops.STATE.activity = f"{len(listed)} avatars on the runtime"

        ops._start_task("list", work, done, settings, label="List avatars")
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_import_avatar(bpy.types.Operator):
    """Import the avatar selected in the list (armature, mesh with the 52 ARKit shape keys,
    textured material) from the runtime"""

    bl_idname = "avatar_runtime.import_avatar"
    bl_label = "Import Avatar"

    avatar_id: StringProperty(name="Avatar ID", description="Default: the one selected in the list",
                              options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return "import" not in ops.STATE.tasks

    def execute(self, context):
        items = avatars(context)
        wm = context.window_manager
        if self.avatar_id:
            item = next((i for i in items if i.avatar_id == self.avatar_id), None)
            avatar = {"id": self.avatar_id, "name": item.name if item else ""}
        elif 0 <= wm.avatar_runtime_avatar_index < len(items):
            item = items[wm.avatar_runtime_avatar_index]
            avatar = {"id": item.avatar_id, "name": item.name}
        else:
            self.report({"ERROR"}, "No avatar selected: refresh the avatar list and pick one")
            return {"CANCELLED"}
        settings = prefs.get(context).settings()
        ops.STATE.activity = f"Importing {avatar['name'] or avatar['id']}"

        def work(task: Task) -> dict[str, bytes]:
            with Client(settings) as client:
                return client.export_mesh(avatar["id"], "glb", task.cancelled)

        def done(files: dict[str, bytes]) -> None:
            rig = ops.import_avatar(avatar, files)
            ops.STATE.activity = f"Imported {rig.armature.name}"
            ops._report("INFO", ops.STATE.activity)

        ops._start_task("import", work, done, settings, label="Import avatar")
        return {"FINISHED"}


classes = (AVATAR_RUNTIME_PG_avatar, AVATAR_RUNTIME_UL_avatars, AVATAR_RUNTIME_OT_refresh_avatars,
           AVATAR_RUNTIME_OT_import_avatar)


def register_properties() -> None:
    wm = bpy.types.WindowManager
    wm.avatar_runtime_avatars = bpy.props.CollectionProperty(type=AVATAR_RUNTIME_PG_avatar)
    wm.avatar_runtime_avatar_index = IntProperty(name="Selected Avatar", default=0)


def unregister_properties() -> None:
    for image in [i for i in bpy.data.images if i.name.startswith(THUMBNAIL_PREFIX)]:
        bpy.data.images.remove(image)
    del bpy.types.WindowManager.avatar_runtime_avatar_index
    del bpy.types.WindowManager.avatar_runtime_avatars
