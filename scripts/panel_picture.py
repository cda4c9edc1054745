"""Picture of the add-on's N-panel and preferences for the docs, drawn without a Blender GUI.

    .venv/bin/python scripts/panel_picture.py --out docs/panel.png

The ``bpy`` module from PyPI runs Blender in background mode, which cannot draw the UI.  This
script registers the add-on, fills the scene's ``refine_motion`` settings with the embedded
example shot (``examples/shot``, Video mode), then calls the REAL ``draw()`` methods of every
panel class in ``scorehmr_blender/panel.py`` (in Blender's order, honouring ``poll()``) and of
the add-on preferences with :class:`RecordingLayout`, a stand-in for ``UILayout`` that records
rows, columns, boxes, splits, properties (UI name, type and current value read from
``bl_rna``), labels, operator buttons (label from the operator, greyed when its ``poll()``
fails), separators, lists and progress bars.  The recorded tree is then drawn with matplotlib
as a Blender-like dark sidebar.  When the settings have a Multi-View list of extra views
(``views``), a second picture (``panel_multiview.png`` next to ``--out``) shows Multi-View mode
with two extra views.

The recorder (:func:`record_sidebar`, :func:`record_preferences`) needs no real UILayout and
no GUI; ``tests/test_docs_pictures.py`` runs it on the real panels.
"""

import argparse
import sys
import time
import types
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import scorehmr_blender  # noqa: E402
from scorehmr_blender import engine_runner, panel, preferences  # noqa: E402

EXAMPLE_FOOTAGE = str(ROOT / "examples" / "shot" / "shot.mp4")  # as a file browser fills them in
EXAMPLE_KEYPOINTS = str(ROOT / "examples" / "shot" / "keypoints.npz")
MULTIVIEW_FOLDER = "/data/shots/box_lift"  # made-up footage of the extra views (only names are shown)
EXAMPLE_FRAMES = 96


# ================================================================================================
# Recording stand-in for bpy.types.UILayout
# ================================================================================================

class Node:
    """One recorded layout element: a container ('layout', 'column', 'row', 'box', 'split') or an
    item ('prop', 'label', 'operator', 'separator', 'spacer', 'list', 'progress', 'unknown')."""

    def __init__(self, kind, **attrs):
        self.kind = kind
        self.attrs = attrs
        self.children = []

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def __repr__(self):
        return f"Node({self.kind}, {self.attrs}, {len(self.children)} children)"


# Layout flags and their defaults; use_property_split/decorate are copied into sub-layouts when
# they are made (as Blender does), the others apply to the layout they are set on and its content.
_INHERITED = {"use_property_split": False, "use_property_decorate": True}
_FLAGS = {**_INHERITED, "active": True, "enabled": True, "alert": False, "scale_x": 1.0, "scale_y": 1.0,
          "alignment": 'EXPAND', "emboss": 'NORMAL', "operator_context": 'INVOKE_DEFAULT',
          "activate_init": False, "active_default": False, "use_property_split_decorate": True,
          "ui_units_x": 0.0, "ui_units_y": 0.0}


class OperatorProperties:
    """What ``layout.operator()`` returns: operator properties set on the button are recorded."""

    def __init__(self, node):
        object.__setattr__(self, "_node", node)

    def __setattr__(self, name, value):
        self._node.attrs.setdefault("properties", {})[name] = value

    def __getattr__(self, name):
        return self._node.attrs.get("properties", {}).get(name)


def _enum_name(rna, identifier):
    for item in rna.enum_items:
        if item.identifier == identifier:
            return item.name
    return identifier  # dynamic enums list no items outside a real UI


def describe_prop(data, name):
    """UI name, type, subtype and current value of ``data``'s property ``name``, as the UI shows it.
    KeyError when ``data`` has no such property (Blender only prints a warning then)."""
    if name not in data.bl_rna.properties:
        raise KeyError(f"{type(data).__name__} has no property {name!r}")
    rna = data.bl_rna.properties[name]
    value = getattr(data, name)
    info = dict(identifier=name, ui_name=rna.name or name, type=rna.type, subtype=rna.subtype,
                readonly=rna.is_readonly, value=value, fraction=None, fixed_type="")
    array = getattr(rna, "is_array", False) and getattr(rna, "array_length", 0) > 0
    if rna.type == 'ENUM':
        if rna.is_enum_flag:
            info["display"] = ", ".join(_enum_name(rna, v) for v in sorted(value))
        else:
            info["display"] = _enum_name(rna, value)
        info["items"] = [(item.identifier, item.name) for item in rna.enum_items]
    elif rna.type == 'BOOLEAN':
        info["value"] = list(value) if array else bool(value)
        info["display"] = ""
    elif rna.type in {'INT', 'FLOAT'}:
        def fmt(v):
            if rna.type == 'INT':
                text = str(v)
            elif rna.subtype == 'ANGLE':
                text = f"{v * 57.29577951308232:.{max(0, rna.precision - 2)}f}\u00b0"
            else:
                text = f"{v:.{rna.precision}f}"
            if rna.subtype == 'PERCENTAGE':
                text += " %"
            elif rna.subtype in {'DISTANCE', 'LENGTH'}:
                text += " m"
            elif rna.subtype == 'PIXEL':
                text += " px"
            return text
        if array:
            info["value"] = list(value)
            info["display"] = ", ".join(fmt(v) for v in value)
        else:
            info["display"] = fmt(value)
            if rna.subtype == 'FACTOR' or (rna.subtype == 'PERCENTAGE' and rna.hard_max > rna.hard_min):
                low, high = rna.soft_min, rna.soft_max
                info["fraction"] = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    elif rna.type == 'STRING':
        info["display"] = str(value)
    elif rna.type == 'POINTER':
        info["fixed_type"] = rna.fixed_type.identifier if rna.fixed_type else ""
        info["display"] = getattr(value, "name", "") if value is not None else ""
        info["object_type"] = getattr(value, "type", "") if isinstance(value, bpy.types.Object) else ""
    elif rna.type == 'COLLECTION':
        info["display"] = f"{len(value)} items"
    else:
        info["display"] = str(value)
    return info


def _operator(idname):
    category, name = idname.split(".", 1)
    return getattr(getattr(bpy.ops, category), name)


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout`` in ``draw()``: records what would be drawn as a
    :class:`Node` tree.  Unknown layout functions are recorded as 'unknown' items (drawn as a
    placeholder), so a new call in a panel shows up instead of breaking the picture."""

    def __init__(self, node, context, parent=None):
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_context", context)
        if parent is not None:
            for flag in _INHERITED:
                node.attrs.setdefault(flag, getattr(parent, flag))

    # -- flags --------------------------------------------------------------------------------
    def __getattr__(self, name):
        if name in _FLAGS:
            return self._node.attrs.get(name, _FLAGS[name])
        if name.startswith("_"):
            raise AttributeError(name)

        def unknown(*args, **kwargs):
            return self._child("unknown", method=name, args=[repr(a)[:40] for a in args])
        return unknown

    def __setattr__(self, name, value):
        self._node.attrs[name] = value

    @property
    def node(self):
        return self._node

    def _add(self, kind, **attrs):
        node = Node(kind, **attrs)
        self._node.children.append(node)
        return node

    def _child(self, kind, **attrs):
        return RecordingLayout(self._add(kind, **attrs), self._context, self)

    # -- sub-layouts --------------------------------------------------------------------------
    def column(self, align=False, heading="", heading_ctxt="", translate=True):
        return self._child("column", align=align, heading=heading)

    def row(self, align=False, heading="", heading_ctxt="", translate=True):
        return self._child("row", align=align, heading=heading)

    def box(self):
        return self._child("box")

    def split(self, factor=0.0, align=False):
        return self._child("split", factor=factor, align=align)

    def grid_flow(self, row_major=False, columns=0, even_columns=False, even_rows=False, align=False):
        return self._child("column", align=align)

    def column_flow(self, columns=0, align=False):
        return self._child("column", align=align)

    def panel(self, idname, default_closed=False):  # Blender 4.1+ layout panels: (header, body)
        box = self._child("box")
        return box.row(), (None if default_closed else box.column())

    def panel_prop(self, data, property):
        return self.panel(property)

    # -- items --------------------------------------------------------------------------------
    def prop(self, data, property, text=None, text_ctxt="", translate=True, icon='NONE', placeholder="",
             expand=False, slider=False, toggle=-1, icon_only=False, event=False, full_event=False,
             emboss=True, index=-1, icon_value=0, invert_checkbox=False):
        info = describe_prop(data, property)
        self._add("prop", **info, text=info["ui_name"] if text is None else text, icon=icon,
                  expand=expand, slider=slider, toggle=toggle, icon_only=icon_only, emboss=emboss,
                  split=self.use_property_split, decorate=self.use_property_decorate,
                  placeholder=placeholder)

    def prop_search(self, data, property, search_data, search_property, text=None, text_ctxt="",
                    translate=True, icon='NONE', results_are_suggestions=False, item_search_property=""):
        info = describe_prop(data, property)
        if search_property not in search_data.bl_rna.properties:
            raise KeyError(f"{type(search_data).__name__} has no property {search_property!r}")
        self._add("prop", **info, text=info["ui_name"] if text is None else text, icon=icon, search=True,
                  expand=False, slider=False, toggle=-1, icon_only=False, emboss=True,
                  split=self.use_property_split, decorate=self.use_property_decorate, placeholder="")

    def prop_enum(self, data, property, value, text=None, text_ctxt="", translate=True, icon='NONE'):
        info = describe_prop(data, property)
        self._add("operator", idname="", text=_enum_name(data.bl_rna.properties[property], value)
                  if text is None else text, icon=icon, enabled=True, depress=info["value"] == value)

    def label(self, text="", text_ctxt="", translate=True, icon='NONE', icon_value=0):
        self._add("label", text=text, icon=icon)

    def operator(self, operator, text=None, text_ctxt="", translate=True, icon='NONE', emboss=True,
                 depress=False, icon_value=0, search_weight=0.0):
        op = _operator(operator)
        rna = op.get_rna_type()  # KeyError for an unknown operator
        try:
            enabled = bool(op.poll())
        except Exception:  # noqa: BLE001 -- a poll that needs a real UI context: draw it enabled
            enabled = True
        node = self._add("operator", idname=operator, op_label=rna.name, text=rna.name if text is None else text,
                         icon=icon, enabled=enabled, depress=depress)
        return OperatorProperties(node)

    def menu(self, menu, text=None, text_ctxt="", translate=True, icon='NONE', icon_value=0):
        cls = getattr(bpy.types, menu, None)
        self._add("prop", identifier=menu, ui_name=getattr(cls, "bl_label", menu), type='ENUM', subtype='NONE',
                  display=getattr(cls, "bl_label", menu) if text is None else text, text="", icon=icon,
                  value=None, fraction=None, fixed_type="", readonly=False, expand=False, slider=False,
                  toggle=-1, icon_only=False, emboss=True, split=False, decorate=False, placeholder="")

    def separator(self, factor=1.0, type='AUTO'):
        self._add("separator", factor=factor, line=type == 'LINE')

    def separator_spacer(self):
        self._add("spacer")

    def progress(self, factor=0.0, type='BAR', text=""):
        self._add("progress", factor=factor, text=text)

    def context_pointer_set(self, name, data):
        pass

    def template_list(self, listtype_name, list_id, dataptr, propname, active_dataptr, active_propname,
                      item_dyntip_propname="", rows=5, maxrows=5, type='DEFAULT', columns=9,
                      sort_reverse=False, sort_lock=False):
        items = getattr(dataptr, propname)
        active = getattr(active_dataptr, active_propname)
        shown = max(rows, min(len(items), maxrows))
        node = self._add("list", listtype=listtype_name, propname=propname, count=len(items), rows=shown,
                         active_index=active)
        ui_list = getattr(bpy.types, listtype_name, None)
        draw_item = getattr(ui_list, "draw_item", None)
        stand_in = types.SimpleNamespace(layout_type='DEFAULT', filter_name="", use_filter_show=False,
                                         bitflag_filter_item=1 << 30, list_id=list_id)
        for index, item in enumerate(list(items)[:shown]):
            row = Node("row", align=False, index=index)
            node.children.append(row)
            layout = RecordingLayout(row, self._context)  # Blender gives each row a fresh layout
            if draw_item is None:
                layout.label(text=getattr(item, "name", str(index)))
            else:
                draw_item(stand_in, self._context, layout, dataptr, item, 0, active_dataptr, active_propname,
                          index)


def _stand_in(cls, layout, data=None):
    """An object to call ``cls.draw(self, context)`` with: the class's bl_* attributes and
    ``layout``; attributes of ``data`` (the real add-on preferences) when given."""
    attrs = {k: getattr(cls, k) for k in dir(cls) if k.startswith("bl_")}

    class StandIn:
        def __getattr__(self, name):
            if data is not None:
                return getattr(data, name)
            raise AttributeError(name)

    stand_in = StandIn()
    stand_in.__dict__.update(attrs, layout=layout)
    return stand_in


class PanelRecord:
    """A panel class and what its draw() recorded; ``children`` are its sub-panels."""

    def __init__(self, cls, tree, header=None, level=0):
        self.cls, self.tree, self.header, self.level = cls, tree, header, level
        self.label = getattr(cls, "bl_label", cls.__name__)
        self.children = []

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def nodes(self):
        """Every recorded node of this panel and its sub-panels."""
        for record in self.walk():
            yield from record.tree.walk()


def record_draw(draw, cls, context, data=None):
    """Calls ``draw(stand_in, context)`` with a recording layout; returns the root Node."""
    root = Node("layout", align=False)
    draw(_stand_in(cls, RecordingLayout(root, context), data), context)
    return root


def panel_classes(module=panel):
    """The Panel classes of ``module`` in Blender's order: registration order, then bl_order."""
    listed = [c for c in getattr(module, "classes", ()) if isinstance(c, type) and issubclass(c, bpy.types.Panel)]
    others = [c for c in vars(module).values()
              if isinstance(c, type) and issubclass(c, bpy.types.Panel) and c is not bpy.types.Panel
              and c.__module__ == module.__name__ and c not in listed]
    ordered = listed + others
    return sorted(ordered, key=lambda c: (getattr(c, "bl_order", 0), ordered.index(c)))


def record_sidebar(context=None, module=panel):
    """Records every panel of ``module`` whose poll() passes; returns the top-level PanelRecords
    (sub-panels nested, in order)."""
    context = context or bpy.context
    classes = panel_classes(module)
    by_id = {getattr(c, "bl_idname", c.__name__): c for c in classes}

    def record(cls, level):
        poll = getattr(cls, "poll", None)
        if poll is not None and not poll(context):
            return None
        header = record_draw(cls.draw_header, cls, context) if hasattr(cls, "draw_header") else None
        rec = PanelRecord(cls, record_draw(cls.draw, cls, context), header, level)
        for child in classes:
            if getattr(child, "bl_parent_id", "") == getattr(cls, "bl_idname", cls.__name__):
                sub = record(child, level + 1)
                if sub is not None:
                    rec.children.append(sub)
        return rec

    roots = [c for c in classes if getattr(c, "bl_parent_id", "") not in by_id]
    return [r for r in (record(c, 0) for c in roots) if r is not None]


def record_preferences(prefs, context=None):
    """Records the add-on preferences' draw() for the real preferences object ``prefs``."""
    context = context or bpy.context
    cls = type(prefs)
    return PanelRecord(cls, record_draw(cls.draw, cls, context, data=prefs))


def find(nodes, kind, **attrs):
    """The recorded nodes of ``kind`` whose attributes equal ``attrs``."""
    return [n for n in nodes if n.kind == kind and all(n.attrs.get(k) == v for k, v in attrs.items())]


# ================================================================================================
# Scene set-up
# ================================================================================================

def fill_example(scene=None):
    """The scene's settings for the embedded example shot in Video mode (as a user would set them)."""
    scene = scene or bpy.context.scene
    scene.frame_start, scene.frame_end = 1, EXAMPLE_FRAMES
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.render.resolution_x, scene.render.resolution_y = 640, 360
    settings = scene.refine_motion
    settings.mode = 'VIDEO'
    settings.footage_source = 'FILE'
    settings.footage_path = EXAMPLE_FOOTAGE
    settings.keypoints_source = 'FILE'
    settings.keypoints_path = EXAMPLE_KEYPOINTS
    settings.frame_end = EXAMPLE_FRAMES
    settings.frame_start = 1
    return settings


def views_property(settings):
    """The identifier of the settings' Multi-View list of extra views, or None."""
    props = settings.bl_rna.properties
    if 'MULTI_VIEW' not in {i.identifier for i in props["mode"].enum_items}:
        return None
    for prop in props:
        if prop.type == 'COLLECTION' and "view" in prop.identifier.lower():
            return prop.identifier
    return None


def _fill_view(scene, inputs, index):
    """Footage, keypoints and a Blender camera for view ``index`` (fields found by name)."""
    for prop in inputs.bl_rna.properties:
        ident = prop.identifier
        if prop.is_readonly or ident in {"rna_type", "name"}:
            continue
        if prop.type == 'STRING' and "keypoint" in ident:
            setattr(inputs, ident, f"{MULTIVIEW_FOLDER}/cam{index}_keypoints.json")
        elif prop.type == 'STRING' and prop.subtype == 'FILE_PATH' and ("footage" in ident or "video" in ident):
            setattr(inputs, ident, f"{MULTIVIEW_FOLDER}/cam{index}.mp4")
        elif prop.type == 'POINTER' and prop.fixed_type and prop.fixed_type.identifier == 'Object' \
                and "camera" in ident:
            cam = bpy.data.objects.new(f"Cam {index}", bpy.data.cameras.new(f"Cam {index}"))
            scene.collection.objects.link(cam)
            setattr(inputs, ident, cam)


def fill_multiview(scene=None, extra_views=2):
    """Multi-View mode with ``extra_views`` further cameras, each (and the main shot, view 0) with
    footage, keypoints and a Blender camera where the settings have such fields; False (nothing
    changed) when the settings have no Multi-View list of views."""
    scene = scene or bpy.context.scene
    settings = scene.refine_motion
    name = views_property(settings)
    if name is None:
        return False
    settings.mode = 'MULTI_VIEW'
    _fill_view(scene, settings, 0)
    views = getattr(settings, name)
    views.clear()
    for i in range(1, extra_views + 1):
        _fill_view(scene, views.add(), i)
    for prop in settings.bl_rna.properties:  # the list's active index: the first extra view
        if prop.type == 'INT' and "active" in prop.identifier and "view" in prop.identifier:
            setattr(settings, prop.identifier, 0)
    return True


def fill_retarget_example(context=None):
    """What the Retarget & Export panel shows after an import: the SMPL armature (free body model's
    rest joints, with an action), a Rigify-named character, and the mapping list filled by the
    add-on's own Build Mapping operator (preset Rigify).  Returns False if that panel's settings
    are not there."""
    import numpy as np
    from scorehmr_blender import armature, retarget_ops, retarget_presets

    context = context or bpy.context
    scene = context.scene
    if not hasattr(scene, "refine_motion_retarget"):
        return False
    joints = np.load(ROOT / "backend" / "assets" / "free_body_model.npz")["J"]
    rig = armature.new_armature(context, "shot", joints, scene.collection)
    rig.animation_data_create().action = bpy.data.actions.new("shot")

    data = bpy.data.armatures.new("Character")
    character = bpy.data.objects.new("Character", data)
    scene.collection.objects.link(character)
    context.view_layer.objects.active = character
    bpy.ops.object.mode_set(mode='EDIT')
    for i, bone_name in enumerate(sorted(set(retarget_presets.RIGIFY.values()))):
        bone = data.edit_bones.new(bone_name)
        bone.head, bone.tail = (0.1 * i, 0.0, 0.0), (0.1 * i, 0.0, 0.1)
    bpy.ops.object.mode_set(mode='OBJECT')

    settings = retarget_ops.settings_of(context)
    settings.source, settings.target = rig, character
    settings.preset = next(i.identifier for i in settings.bl_rna.properties["preset"].enum_items
                           if i.identifier == 'RIGIFY' or "rigify" in i.name.lower())
    bpy.ops.refinemotion.retarget_build_mapping()
    for obj in scene.objects:
        obj.select_set(obj is rig)
    context.view_layer.objects.active = rig  # the export buttons work on the active armature
    return True


def enabled_preferences():
    """The real add-on preferences: the add-on re-enabled through addon_utils (a registered-only
    add-on has none).  Returns (prefs, undo) where undo() goes back to the registered-only state."""
    import addon_utils

    scorehmr_blender.unregister()
    addon_utils.enable(scorehmr_blender.__name__, default_set=True, handle_error=None)
    prefs = preferences.get(bpy.context)

    def undo():
        addon_utils.disable(scorehmr_blender.__name__, default_set=True, handle_error=None)
        scorehmr_blender.register()
    return prefs, undo


def wait_for_device_query(timeout=120.0):
    """The preferences show the engine's device, found by a background query that draw() starts:
    wait for it so the picture shows the answer rather than 'checking...'."""
    end = time.time() + timeout
    while engine_runner.device_query_running() and time.time() < end:
        time.sleep(0.2)


# ================================================================================================
# Drawing the recorded tree (matplotlib)
# ================================================================================================

U = 22            # widget height (px)
GAP = 4           # between items of a non-aligned column / row
PAD = 10          # panel body padding (x)
HEADER = 26       # panel header height
SPLIT = 0.4       # label share of a property-split row (Blender's UI_ITEM_PROP_SEP_DIVIDE)
FONT_PX = 12.0
DPI = 100

C = dict(
    bg="#1d1d1d", region="#262626", panel="#303030", header="#3b3b3b", subheader="#353535",
    box="#2a2a2a", box_edge="#242424", text="#e6e6e6", label="#c4c4c4", dim="#7d7d7d",
    button="#545454", button_edge="#3a3a3a", field="#1d1d1d", menu="#282828", edge="#1a1a1a",
    blue="#4772b3", list="#262626", list_active="#334d80", warn="#e0a030", ok="#6dbf5a",
    caption="#9a9a9a",
)

GLYPHS = {
    'PLAY': "\u25b6", 'IMPORT': "\u2b07", 'EXPORT': "\u2b06", 'ERROR': "\u26a0", 'CANCEL': "\u2715",
    'CHECKMARK': "\u2713", 'FILE_REFRESH': "\u27f3", 'SORTTIME': "\u25f7", 'MEMORY': "\u25a6",
    'ADD': "+", 'REMOVE': "\u2212", 'FILE_TICK': "\u2713", 'CONSOLE': ">_", 'INFO': "i",
    'TRIA_DOWN': "\u25be", 'TRIA_RIGHT': "\u25b8", 'X': "\u2715", 'PREFERENCES': "\u2699",
}
ICON_COLOURS = {'ERROR': "warn", 'CHECKMARK': "ok", 'CANCEL': "label"}
VECTOR_ICONS = {'FILEBROWSER', 'FILE_FOLDER', 'CAMERA_DATA', 'OUTLINER_OB_CAMERA', 'FILE_MOVIE', 'BONE_DATA',
                'ARMATURE_DATA', 'OUTLINER_OB_ARMATURE', 'OBJECT_DATA', 'MOVIE'}
OBJECT_ICONS = {'CAMERA': 'OUTLINER_OB_CAMERA', 'ARMATURE': 'OUTLINER_OB_ARMATURE'}
POINTER_ICONS = {'MovieClip': 'FILE_MOVIE', 'Object': 'OBJECT_DATA', 'Armature': 'ARMATURE_DATA'}


class Measure:
    """Text widths in pixels (matplotlib's Agg renderer at the picture's dpi)."""

    def __init__(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.font_manager import FontProperties

        self.fig = plt.figure(dpi=DPI)
        self.renderer = self.fig.canvas.get_renderer()
        self.fonts = {w: FontProperties(family="DejaVu Sans", size=FONT_PX * 72 / DPI, weight=w)
                      for w in ("normal", "bold")}
        self.cache = {}

    def width(self, text, weight="normal", size=1.0):
        key = (text, weight, size)
        if key not in self.cache:
            font = self.fonts[weight].copy()
            font.set_size(font.get_size() * size)
            w, _, _ = self.renderer.get_text_width_height_descent(text, font, ismath=False)
            self.cache[key] = w
        return self.cache[key]

    def fit(self, text, width, middle=False, weight="normal"):
        """``text`` shortened with an ellipsis (in the middle for paths, as Blender does) to fit."""
        if width <= 0:
            return ""
        if self.width(text, weight) <= width:
            return text
        lo, hi = 0, len(text)
        while lo < hi:  # the most characters kept that still fit
            mid = (lo + hi + 1) // 2
            if self.width(self._cut(text, mid, middle), weight) <= width:
                lo = mid
            else:
                hi = mid - 1
        return self._cut(text, lo, middle) if lo else ""

    @staticmethod
    def _cut(text, keep, middle):
        if not middle:
            return text[:keep].rstrip() + "\u2026"
        head = keep // 2
        return text[:head] + "\u2026" + text[len(text) - (keep - head):]


class Ops:
    """Drawing operations in pixel coordinates (y down), replayed by :func:`paint`."""

    def __init__(self):
        self.items = []

    def rect(self, x, y, w, h, fill, edge=None, radius=4, corners=(1, 1, 1, 1), alpha=1.0, lw=1.0):
        self.items.append(("rect", x, y, w, h, fill, edge, radius, tuple(corners), alpha, lw))

    def text(self, x, y, s, color, ha="left", weight="normal", alpha=1.0, size=1.0, family="DejaVu Sans"):
        if s:
            self.items.append(("text", x, y, s, color, ha, weight, alpha, size, family))

    def line(self, points, color, lw=1.2, alpha=1.0):
        self.items.append(("line", points, color, lw, alpha))

    def poly(self, points, fill, edge=None, alpha=1.0, lw=1.0):
        self.items.append(("poly", points, fill, edge, alpha, lw))

    def circle(self, x, y, r, fill, edge=None, alpha=1.0):
        self.items.append(("circle", x, y, r, fill, edge, alpha))

    def shifted(self, dx, dy):
        out = []
        for op in self.items:
            kind = op[0]
            if kind in {"rect", "text", "circle"}:
                out.append((kind, op[1] + dx, op[2] + dy, *op[3:]))
            elif kind == "line":
                out.append((kind, [(x + dx, y + dy) for x, y in op[1]], *op[2:]))
            else:
                out.append((kind, [(x + dx, y + dy) for x, y in op[1]], *op[2:]))
        return out


def _rounded(x, y, w, h, r, corners):
    """Outline of a rectangle with the given corners (tl, tr, br, bl) rounded, y down."""
    import math
    r = max(0.0, min(r, w / 2, h / 2))
    pts = []
    centres = [(x + r, y + r, 180), (x + w - r, y + r, 270), (x + w - r, y + h - r, 0), (x + r, y + h - r, 90)]
    sharp = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    for (cx, cy, start), round_it, corner in zip(centres, corners, sharp):
        if round_it and r > 0:
            for k in range(7):
                a = math.radians(start + 15 * k)
                pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        else:
            pts.append(corner)
    return pts


class Painter:
    """Lays out a recorded Node tree into :class:`Ops`."""

    def __init__(self, measure):
        self.m = measure

    # -- sizes ----------------------------------------------------------------------------------
    def height(self, node, width):
        ops = Ops()
        return self.place(node, 0, 0, width, ops, (1, 1, 1, 1), True)

    def est_width(self, node):
        """(width, fixed) the item would like in a row; fixed items keep it, others share the rest."""
        k, a = node.kind, node.attrs
        if k == "label":
            return self.m.width(a["text"]) + (20 if a["icon"] != 'NONE' else 0) + 8, False
        if k == "operator":
            if not a["text"]:
                return U + 2, True
            return self.m.width(a["text"]) + (20 if a["icon"] != 'NONE' else 0) + 24, False
        if k == "prop":
            if a.get("icon_only"):
                return U + 2, True
            return max(80.0, self.m.width(str(a["text"])) + self.m.width(str(a["display"])) + 40), False
        if k in {"separator"}:
            return 8 * a["factor"], True
        if k == "spacer":
            return 0, False
        if k in {"list"}:
            return 200, False
        if k in {"row", "split"} and node.children:
            parts = [self.est_width(c) for c in node.children]
            return sum(w for w, _ in parts), all(f for _, f in parts)
        if node.children:
            parts = [self.est_width(c) for c in node.children]
            return max(w for w, _ in parts), all(f for _, f in parts)
        return 60, False

    # -- placement ------------------------------------------------------------------------------
    def place(self, node, x, y, w, ops, corners, dim):
        """Places ``node`` at (x, y) with width ``w``; returns its height.  ``dim``: the enclosing
        layouts are all active and enabled (False: drawn greyed)."""
        a = node.attrs
        dim = dim and a.get("active", True) and a.get("enabled", True)
        k = node.kind
        if k in {"layout", "column"}:
            return self._column(node, x, y, w, ops, corners, dim)
        if k == "box":
            inner = self._column(node, x + 6, y + 6, w - 12, Ops(), (1, 1, 1, 1), dim) if node.children else 0
            h = inner + 12
            ops.rect(x, y, w, h, C["box"], C["box_edge"], radius=5)
            self._column(node, x + 6, y + 6, w - 12, ops, (1, 1, 1, 1), dim)
            return h
        if k in {"row", "split"}:
            return self._row(node, x, y, w, ops, corners, dim)
        return self._item(node, x, y, w, ops, corners, dim)

    def _column(self, node, x, y, w, ops, corners, dim):
        align = node.attrs.get("align", False)
        kids = node.children
        cy = y
        for i, child in enumerate(kids):
            if align:
                first, last = i == 0, i == len(kids) - 1
                mask = (corners[0] and first, corners[1] and first, corners[2] and last, corners[3] and last)
            else:
                mask = (1, 1, 1, 1)
            h = self.place(child, x, cy, w, ops, mask, dim)
            cy += h
            if i < len(kids) - 1 and h > 0:
                cy += 0 if align else GAP
        return cy - y

    def _row(self, node, x, y, w, ops, corners, dim):
        kids = node.children
        if not kids:
            return 0
        align = node.attrs.get("align", False)
        gap = 0 if align else GAP
        avail = w - gap * (len(kids) - 1)
        if node.kind == "split":
            factor = node.attrs.get("factor", 0.0)
            if factor > 0 and len(kids) > 1:
                first = avail * factor
                widths = [first] + [(avail - first) / (len(kids) - 1)] * (len(kids) - 1)
            else:
                widths = [avail / len(kids)] * len(kids)
        else:
            est = [self.est_width(c) for c in kids]
            fixed = sum(e for e, f in est if f)
            flexible = sum(e for e, f in est if not f) or 1.0
            widths = [e if f else max(0.0, (avail - fixed) * e / flexible) for e, f in est]
        h, cx = 0, x
        for i, (child, cw) in enumerate(zip(kids, widths)):
            if align:
                first, last = i == 0, i == len(kids) - 1
                mask = (corners[0] and first, corners[1] and last, corners[2] and last, corners[3] and first)
            else:
                mask = (1, 1, 1, 1)
            h = max(h, self.place(child, cx, y, cw, ops, mask, dim))
            cx += cw + gap
        return h

    # -- items ----------------------------------------------------------------------------------
    def _icon(self, ops, icon, x, y, color, alpha):
        """Draws ``icon`` in the 16x16 box at (x, y - 8) (y = the row's centre); returns its width."""
        if icon in (None, 'NONE', ''):
            return 0
        if icon in VECTOR_ICONS:
            self._vector_icon(ops, icon, x, y, color, alpha)
            return 18
        glyph = GLYPHS.get(icon)
        if glyph is None:
            ops.rect(x + 3, y - 5, 10, 10, "none", color, radius=2, alpha=0.6 * alpha)
            return 18
        ops.text(x + 8, y, glyph, C.get(ICON_COLOURS.get(icon, ""), color), ha="center", alpha=alpha,
                 size=0.8 if len(glyph) > 1 else 1.0,
                 family="DejaVu Sans Mono" if len(glyph) > 1 else "DejaVu Sans")
        return 18

    def _vector_icon(self, ops, icon, x, y, color, alpha):
        x0, y0 = x + 2, y - 6
        if icon in {'FILEBROWSER', 'FILE_FOLDER'}:
            ops.poly([(x0, y0 + 2), (x0 + 5, y0 + 2), (x0 + 6.5, y0 + 4), (x0 + 12, y0 + 4), (x0 + 12, y0 + 12),
                      (x0, y0 + 12)], "none", color, alpha, 1.2)
        elif icon in {'CAMERA_DATA', 'OUTLINER_OB_CAMERA'}:
            ops.rect(x0, y0 + 3, 8, 7, "none", color, radius=1, alpha=alpha, lw=1.2)
            ops.poly([(x0 + 8, y0 + 6.5), (x0 + 12, y0 + 3.5), (x0 + 12, y0 + 9.5)], "none", color, alpha, 1.2)
        elif icon in {'FILE_MOVIE', 'MOVIE'}:
            ops.rect(x0 + 1, y0 + 1, 10, 11, "none", color, radius=1, alpha=alpha, lw=1.2)
            for yy in (y0 + 3.5, y0 + 6.5, y0 + 9.5):
                ops.line([(x0 + 1, yy), (x0 + 3, yy)], color, 1.2, alpha)
                ops.line([(x0 + 9, yy), (x0 + 11, yy)], color, 1.2, alpha)
        elif icon == 'BONE_DATA':  # a bone: a shaft with two knuckles at each end
            ops.line([(x0 + 3, y0 + 10), (x0 + 9.5, y0 + 3.5)], color, 2.2, alpha)
            for cx, cy in ((x0 + 0.8, y0 + 10.2), (x0 + 2.8, y0 + 12.2), (x0 + 9.2, y0 + 0.8),
                           (x0 + 11.2, y0 + 2.8)):
                ops.circle(cx, cy, 1.7, color, None, alpha)
        elif icon in {'ARMATURE_DATA', 'OUTLINER_OB_ARMATURE'}:
            ops.circle(x0 + 6, y0 + 1.8, 1.8, color, None, alpha)
            ops.line([(x0 + 6, y0 + 4), (x0 + 6, y0 + 8.5)], color, 1.3, alpha)
            ops.line([(x0 + 1.5, y0 + 5.5), (x0 + 10.5, y0 + 5.5)], color, 1.3, alpha)
            ops.line([(x0 + 2.5, y0 + 13), (x0 + 6, y0 + 8.5), (x0 + 9.5, y0 + 13)], color, 1.3, alpha)
        else:  # OBJECT_DATA: a triangle
            ops.poly([(x0 + 6, y0 + 1.5), (x0 + 11.5, y0 + 11), (x0 + 0.5, y0 + 11)], "none", color, alpha, 1.2)

    def _item(self, node, x, y, w, ops, corners, dim):
        k, a = node.kind, node.attrs
        alpha = 1.0 if dim else 0.45
        mid = y + U / 2
        if k == "separator":
            h = 8 * a.get("factor", 1.0)
            if a.get("line"):
                ops.line([(x, y + h / 2), (x + w, y + h / 2)], C["button_edge"], 1.0)
            return h
        if k == "spacer":
            return 0
        if k == "label":
            off = self._icon(ops, a["icon"], x + 1, mid, C["label"], alpha)
            ops.text(x + 3 + off, mid, self.m.fit(a["text"], w - off - 6), C["label"], alpha=alpha)
            return U
        if k == "operator":
            enabled = a.get("enabled", True)
            falpha = alpha * (1.0 if enabled else 0.5)
            ops.rect(x, y, w, U, C["blue"] if a.get("depress") else C["button"], C["button_edge"], 4, corners,
                     alpha=1.0 if enabled else 0.6)
            text = a["text"]
            icon_w = 18 if a["icon"] != 'NONE' else 0
            text = self.m.fit(text, w - icon_w - 10)
            total = icon_w + (self.m.width(text) + (4 if icon_w else 0) if text else 0)
            start = x + (w - total) / 2
            self._icon(ops, a["icon"], start - 1, mid, C["text"], falpha)
            ops.text(start + icon_w + (4 if icon_w else 0), mid, text, C["text"], alpha=falpha)
            return U
        if k == "progress":
            ops.rect(x, y, w, U, C["field"], C["edge"], 4, corners)
            ops.rect(x, y, w * a["factor"], U, C["blue"], None, 4, corners)
            ops.text(x + w / 2, mid, self.m.fit(a["text"], w - 8), C["text"], ha="center")
            return U
        if k == "list":
            return self._list(node, x, y, w, ops, dim)
        if k == "prop":
            return self._prop(node, x, y, w, ops, corners, alpha)
        # an unknown layout call: a dashed placeholder naming it
        ops.rect(x, y, w, U, "none", C["dim"], 4, corners)
        ops.text(x + 6, mid, self.m.fit(f"layout.{a.get('method')}(...)", w - 12), C["dim"])
        return U

    def _list(self, node, x, y, w, ops, dim):
        a = node.attrs
        rows, row_h = a["rows"], U
        h = rows * row_h + 8 + 14
        ops.rect(x, y, w, h, C["list"], C["box_edge"], 4)
        scroll = a["count"] > rows
        inner_w = w - 8 - (8 if scroll else 0)
        for i in range(rows):
            ry = y + 4 + i * row_h
            if i < len(node.children):
                if i == a["active_index"]:
                    ops.rect(x + 3, ry, inner_w + 2, row_h, C["list_active"], None, 3)
                self.place(node.children[i], x + 5, ry, inner_w - 2, ops, (1, 1, 1, 1), dim)
        if scroll:  # scroll bar: the shown share of the rows
            track = rows * row_h - 4
            bar = max(12.0, track * rows / a["count"])
            ops.rect(x + w - 9, y + 6, 5, bar, "#6a6a6a", None, 2.5)
        # resize grip (two short lines), as under every Blender list
        gy = y + h - 9
        ops.line([(x + w / 2 - 8, gy - 1.5), (x + w / 2 + 8, gy - 1.5)], C["dim"], 1.0)
        ops.line([(x + w / 2 - 8, gy + 1.5), (x + w / 2 + 8, gy + 1.5)], C["dim"], 1.0)
        return h

    def _prop(self, node, x, y, w, ops, corners, alpha):
        a = node.attrs
        mid = y + U / 2
        text = a["text"]
        typ = a["type"]
        if a.get("decorate") and a.get("split"):
            w -= 22  # the keyframe decorator's column (empty for settings that cannot be animated)
        if typ == 'BOOLEAN' and not isinstance(a["value"], list):
            bx = x + (w * SPLIT + 4 if a.get("split") else 2)
            self._checkbox(ops, bx, mid, a["value"], alpha)
            ops.text(bx + 20, mid, self.m.fit(text, x + w - bx - 22), C["text"], alpha=alpha)
            return U
        if a.get("split"):
            label_w = w * SPLIT
            if text:
                ops.text(x + label_w - 8, mid, self.m.fit(text, label_w - 12), C["label"], ha="right", alpha=alpha)
            self._widget(a, x + label_w, y, w - label_w, ops, corners, alpha, with_name=False)
        elif typ in {'ENUM', 'STRING', 'POINTER'} and text and not a.get("expand"):
            label_w = min(self.m.width(text) + 14, w * 0.45)
            ops.text(x + 2, mid, self.m.fit(text, label_w - 8), C["label"], alpha=alpha)
            self._widget(a, x + label_w, y, w - label_w, ops, corners, alpha, with_name=False)
        else:
            self._widget(a, x, y, w, ops, corners, alpha, with_name=bool(text))
        return U

    def _checkbox(self, ops, x, mid, value, alpha):
        ops.rect(x, mid - 7, 14, 14, C["blue"] if value else C["button"], C["button_edge"], 3, alpha=alpha)
        if value:
            ops.line([(x + 3, mid), (x + 6, mid + 3.5), (x + 11, mid - 4)], "#ffffff", 1.8, alpha)

    def _widget(self, a, x, y, w, ops, corners, alpha, with_name):
        mid = y + U / 2
        typ, sub = a["type"], a["subtype"]
        name, display = a["text"], str(a["display"])
        if typ == 'ENUM' and a.get("expand"):
            items = a.get("items") or []
            iw = w / max(1, len(items))
            for i, (ident, label) in enumerate(items):
                first, last = i == 0, i == len(items) - 1
                mask = (corners[0] and first, corners[1] and last, corners[2] and last, corners[3] and first)
                on = ident == a["value"]
                ops.rect(x + i * iw, y, iw, U, C["blue"] if on else C["button"], C["button_edge"], 4, mask,
                         alpha=alpha)
                ops.text(x + i * iw + iw / 2, mid, self.m.fit(label, iw - 6), C["text"], ha="center", alpha=alpha)
            return
        if typ == 'ENUM':
            ops.rect(x, y, w, U, C["menu"], C["edge"], 4, corners, alpha=alpha)
            off = self._icon(ops, a.get("icon"), x + 3, mid, C["text"], alpha)
            ops.text(x + 7 + off, mid, self.m.fit(display, w - 28 - off), C["text"], alpha=alpha)
            cx = x + w - 11  # the drop-down chevron
            ops.line([(cx - 3.5, mid - 1.5), (cx, mid + 2), (cx + 3.5, mid - 1.5)], C["label"], 1.3, alpha)
            return
        if typ in {'INT', 'FLOAT'}:
            ops.rect(x, y, w, U, C["button"], C["button_edge"], 4, corners, alpha=alpha)
            if a.get("fraction") is not None and a["fraction"] > 0:
                ops.rect(x, y, w * a["fraction"], U, C["blue"], None, 4,
                         (corners[0], a["fraction"] > 0.98 and corners[1], a["fraction"] > 0.98 and corners[2],
                          corners[3]), alpha=alpha)
            if with_name:
                ops.text(x + 8, mid, self.m.fit(name, w * 0.6), C["text"], alpha=alpha)
                ops.text(x + w - 8, mid, display, C["text"], ha="right", alpha=alpha)
            else:
                ops.text(x + w / 2, mid, self.m.fit(display, w - 10), C["text"], ha="center", alpha=alpha)
            return
        if typ in {'STRING', 'POINTER'}:
            browse = typ == 'STRING' and sub in {'FILE_PATH', 'DIR_PATH'} and not a["readonly"]
            fw = w - (U + 2 if browse else 0)
            ops.rect(x, y, fw, U, C["field"], C["edge"], 4,
                     (corners[0], corners[1] and not browse, corners[2] and not browse, corners[3]), alpha=alpha)
            icon = a.get("icon") if a.get("icon") not in (None, 'NONE') else None
            if icon is None and typ == 'POINTER':
                icon = OBJECT_ICONS.get(a.get("object_type")) or POINTER_ICONS.get(a.get("fixed_type"), 'OBJECT_DATA')
            off = self._icon(ops, icon, x + 3, mid, C["label"], alpha)
            if with_name and typ == 'STRING':
                display = f"{name}: {display}" if display else name
            path = typ == 'STRING' and sub in {'FILE_PATH', 'DIR_PATH'}
            ops.text(x + 6 + off, mid, self.m.fit(display, fw - 12 - off, middle=path), C["text"], alpha=alpha)
            if browse:
                bx = x + fw
                ops.rect(bx, y, U + 2, U, C["button"], C["button_edge"], 4,
                         (0, corners[1], corners[2], 0), alpha=alpha)
                self._vector_icon(ops, 'FILEBROWSER', bx + 3, mid, C["text"], alpha)
            return
        ops.rect(x, y, w, U, C["button"], C["button_edge"], 4, corners, alpha=alpha)
        ops.text(x + 6, mid, self.m.fit(f"{name}: {display}" if with_name else display, w - 12), C["text"],
                 alpha=alpha)


# -- panels, columns, figure --------------------------------------------------------------------

class Block:
    """A run of one panel drawn in one picture column: its header (if it starts here) and body."""

    def __init__(self, title, tree, level, painter, width, header=True, sub=False, note=""):
        self.title, self.tree, self.level, self.sub, self.note = title, tree, level, sub, note
        self.header = header
        self.width = width
        self.body_h = painter.height(tree, width - 2 * PAD) if tree.children else 0
        self.height = (HEADER if header else 0) + (self.body_h + 2 * 7 if tree.children else 4)


def panel_blocks(records, painter, width):
    """Flat list of blocks (parent panel, then each sub-panel) of the sidebar records."""
    blocks = []
    for record in records:
        for rec in record.walk():
            blocks.append(Block(rec.label, rec.tree, rec.level, painter, width, sub=rec.level > 0))
    return blocks


def pack_columns(blocks, max_height):
    """Blocks into columns top to bottom, a new column when the next block would pass max_height."""
    columns, current, h = [], [], 0
    for block in blocks:
        if current and h + block.height > max_height:
            columns.append(current)
            current, h = [], 0
        current.append(block)
        h += block.height
    if current:
        columns.append(current)
    return columns


def draw_column(ops, painter, blocks, x, y, width):
    """One column of blocks (a sidebar region with its panel(s)); returns its height."""
    cy = y
    start = cy
    for i, block in enumerate(blocks):
        top = i == 0
        last = i == len(blocks) - 1
        h = block.height
        # the panel's background: one rounded shape around the whole column's run
        ops.rect(x, cy, width, h + (0 if last else 1), C["panel"], None, 6,
                 (top, top, last, last))
        if block.header:
            if block.sub:
                ops.rect(x + 4, cy + 2, width - 8, HEADER - 4, C["subheader"], None, 4)
            else:
                ops.rect(x, cy, width, HEADER, C["header"], None, 6, (1, 1, 0, 0))
            tx = x + (14 if block.sub else 10)
            ops.text(tx + 5, cy + HEADER / 2, GLYPHS['TRIA_DOWN'], C["label"], ha="center")
            ops.text(tx + 16, cy + HEADER / 2, block.title + block.note, C["text"],
                     weight="normal" if block.sub else "bold")
            cy += HEADER
        if block.tree.children:
            painter.place(block.tree, x + PAD, cy + 7, width - 2 * PAD, ops, (1, 1, 1, 1), True)
            cy += block.body_h + 14
        else:
            cy += 4
    return cy - start


def paint(ops_list, width, height, path, title, caption):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Polygon

    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=C["bg"])
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    pt = FONT_PX * 72 / DPI
    for op in ops_list:
        kind = op[0]
        if kind == "rect":
            _, x, y, w, h, fill, edge, radius, corners, alpha, lw = op
            if w <= 0 or h <= 0:
                continue
            ax.add_patch(Polygon(_rounded(x, y, w, h, radius, corners), closed=True,
                                 facecolor=fill, edgecolor=edge or "none", lw=lw if edge else 0, alpha=alpha))
        elif kind == "text":
            _, x, y, s, color, ha, weight, alpha, size, family = op
            ax.text(x, y, s, color=color, ha=ha, va="center_baseline", fontsize=pt * size, weight=weight,
                    alpha=alpha, family=family, parse_math=False)
        elif kind == "line":
            _, points, color, lw, alpha = op
            ax.plot([p[0] for p in points], [p[1] for p in points], color=color, lw=lw, alpha=alpha,
                    solid_capstyle="round", solid_joinstyle="round")
        elif kind == "poly":
            _, points, fill, edge, alpha, lw = op
            ax.add_patch(Polygon(points, closed=True, facecolor=fill, edgecolor=edge or "none", lw=lw,
                                 alpha=alpha))
        elif kind == "circle":
            _, x, y, r, fill, edge, alpha = op
            ax.add_patch(Circle((x, y), r, facecolor=fill, edgecolor=edge or "none", alpha=alpha))
    ax.text(16, 20, title, color=C["text"], fontsize=pt * 1.25, weight="bold", va="center_baseline",
            parse_math=False)
    ax.text(16, 40, caption, color=C["caption"], fontsize=pt * 0.92, style="italic", va="center_baseline",
            parse_math=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor=C["bg"])
    plt.close(fig)


def render_picture(sections, path, title, caption, measure=None, max_column_height=560):
    """``sections``: [(column title, [PanelRecord], column width)]; each section's panels are packed
    into as many columns as needed; all columns side by side."""
    measure = measure or Measure()
    painter = Painter(measure)
    margin, top = 16, 64
    columns = []  # (title, blocks, width)
    for section_title, records, width in sections:
        blocks = panel_blocks(records, painter, width)
        packed = pack_columns(blocks, max(max_column_height, max(b.height for b in blocks)))
        for i, column in enumerate(packed):
            columns.append((section_title if i == 0 else "(continued)", column, width))
    ops = Ops()
    x = margin
    heights = []
    for column_title, blocks, width in columns:
        ops.text(x + 2, top - 8, measure.fit(column_title, width - 4), C["caption"], size=0.92)
        heights.append(draw_column(ops, painter, blocks, x, top, width))
        x += width + margin
    total_w = int(x)
    total_h = int(top + max(heights) + margin)
    total_w = max(total_w, int(measure.width(caption, size=0.92) + 2 * margin + 10),
                  int(measure.width(title, "bold", size=1.25) + 2 * margin + 10))
    paint(ops.items, total_w, total_h, path, title, caption)
    return total_w, total_h


# ================================================================================================

SIDEBAR_WIDTH = 380
SIDEBAR = "3D Viewport \u203a Sidebar (N) \u203a Refine Motion tab"
PREFERENCES = "Edit \u203a Preferences \u203a Add-ons \u203a Refine Motion"


def caption():
    return (f"Drawn from the add-on's own draw() calls in headless Blender (bpy {bpy.app.version_string}), "
            "not a screen capture; icons approximated.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/panel.png", help="PNG to write (default docs/panel.png)")
    parser.add_argument("--no-multiview", action="store_true", help="skip panel_multiview.png")
    args = parser.parse_args(argv)
    out = Path(args.out)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scorehmr_blender.register()
    fill_example()
    fill_retarget_example()
    sidebar = record_sidebar()

    prefs, undo = enabled_preferences()
    record_preferences(prefs)  # starts the device query; draw again once it has answered
    wait_for_device_query()
    prefs_record = record_preferences(prefs)
    prefs_record.label = "Add-on Preferences"
    undo()

    measure = Measure()
    size = render_picture(
        [(SIDEBAR, sidebar, SIDEBAR_WIDTH), (PREFERENCES, [prefs_record], 560)], out,
        "Refine Motion in Blender: the N-panel on the example shot (Video mode) and the add-on preferences",
        caption(), measure)
    print(f"wrote {out} ({size[0]}x{size[1]})")

    if args.no_multiview:
        return 0
    fill_example()
    if not fill_multiview():
        print("no Multi-View list of views in the settings: panel_multiview.png skipped")
        return 0
    multi = record_sidebar()
    changed = _changed_panels(multi, sidebar)
    out_mv = out.with_name("panel_multiview" + out.suffix)
    size = render_picture([(SIDEBAR, changed, SIDEBAR_WIDTH)], out_mv,
                          "Refine Motion: the N-panel in Multi-View mode with two extra views", caption(), measure,
                          max_column_height=600)
    print(f"wrote {out_mv} ({size[0]}x{size[1]})")
    return 0


def _signature(node):
    return (node.kind, tuple(sorted((k, repr(v)) for k, v in node.attrs.items())),
            tuple(_signature(c) for c in node.children))


def _changed_panels(records, before):
    """The panels whose drawing differs from ``before`` (with their parents), the rest left out."""
    old = {rec.cls: _signature(rec.tree) for r in before for rec in r.walk()}

    def keep(rec):
        rec.children = [c for c in rec.children if keep(c)]
        return bool(rec.children) or old.get(rec.cls) != _signature(rec.tree)
    return [r for r in records if keep(r)]


if __name__ == "__main__":
    sys.exit(main())
