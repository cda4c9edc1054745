"""Records what the add-on's panels and preferences draw, in real bpy without a GUI.

``bpy`` as a module runs Blender in background mode, which has no UI to draw into. The panels'
and the preferences' REAL ``draw()`` methods are called with :class:`RecordingLayout`, a
stand-in for ``bpy.types.UILayout`` that builds a :class:`Node` tree: containers (columns, rows,
boxes, splits) and items (properties with their UI name and shown value, labels, operator
buttons greyed when their ``poll()`` fails, separators, lists, progress bars). It checks what
Blender only warns about: a property the data lacks, an operator that is not registered, a
layout function UILayout does not have, each raises.

Used by tests/addon/test_addon_panel_layout.py and scripts/panel_outline.py (the README's outline).
"""
import re
import types
from pathlib import Path

import bpy

import scorehmr_blender
from scorehmr_blender import panel, preferences

EXAMPLE_FOOTAGE = "examples/shot/shot.mp4"       # the embedded example shot, relative to the repository
EXAMPLE_KEYPOINTS = "examples/shot/keypoints.npz"
EXAMPLE_FRAMES = 96
MULTIVIEW_FOLDER = "/data/shots/box_lift"        # made-up footage of the extra views (only names are shown)
README = Path(__file__).resolve().parents[2] / "README.md"
README_BLOCK = re.compile(r"(<!-- panel outline: scripts/panel_outline.py -->\n```text\n)(.*?)(```\n)", re.S)


class _Tree:
    """Something with ``children`` of its own kind."""

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class Node(_Tree):
    """One recorded layout element: a container ('layout', 'column', 'row', 'box', 'split') or an
    item ('prop', 'label', 'operator', 'separator', 'spacer', 'list', 'progress', 'other')."""

    def __init__(self, kind, **attrs):
        self.kind = kind
        self.attrs = attrs
        self.children = []

    def __repr__(self):
        return f"Node({self.kind}, {self.attrs}, {len(self.children)} children)"


# Layout flags and their defaults; use_property_split/decorate are copied into sub-layouts when
# they are made (as Blender does), the others apply to the layout they are set on.
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


def _number_text(rna, value):
    if rna.type == 'INT':
        return str(value)
    if rna.subtype == 'ANGLE':
        return f"{value * 57.29577951308232:.{max(0, rna.precision - 2)}f}\u00b0"
    return f"{value:.{rna.precision}f}"


def describe_prop(data, name):
    """UI name, type, subtype, value and the text the widget shows for ``data``'s property ``name``.
    KeyError when ``data`` has no such property (Blender only prints a warning then)."""
    if name not in data.bl_rna.properties:
        raise KeyError(f"{type(data).__name__} has no property {name!r}")
    rna = data.bl_rna.properties[name]
    value = getattr(data, name)
    if rna.type == 'ENUM':
        display = (", ".join(_enum_name(rna, v) for v in sorted(value)) if rna.is_enum_flag
                   else _enum_name(rna, value))
    elif rna.type == 'BOOLEAN':
        display = "on" if value else "off"
    elif rna.type in {'INT', 'FLOAT'}:
        array = getattr(rna, "is_array", False) and getattr(rna, "array_length", 0) > 0
        display = ", ".join(_number_text(rna, v) for v in (value if array else [value]))
    elif rna.type == 'POINTER':
        display = getattr(value, "name", "") if value is not None else ""
    elif rna.type == 'COLLECTION':
        display = f"{len(value)} items"
    else:
        display = str(value)
    return dict(identifier=name, ui_name=rna.name or name, type=rna.type, subtype=rna.subtype, value=value,
                display=display)


def _operator(idname):
    category, name = idname.split(".", 1)
    return getattr(getattr(bpy.ops, category), name)


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout`` in ``draw()``, recording a :class:`Node` tree. A
    UILayout function without a recorder of its own is recorded as an 'other' item; a name that
    UILayout does not have raises AttributeError, as in Blender."""

    def __init__(self, node, context, parent=None):
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_parent", parent)
        if parent is not None:
            for flag in _INHERITED:
                node.attrs.setdefault(flag, getattr(parent, flag))

    def __getattr__(self, name):
        if name in _FLAGS:
            return self._node.attrs.get(name, _FLAGS[name])
        if name.startswith("_") or name not in bpy.types.UILayout.bl_rna.functions:
            raise AttributeError(f"UILayout has no {name!r}")

        def other(*args, **kwargs):
            return self._child("other", method=name)
        return other

    def __setattr__(self, name, value):
        if name not in _FLAGS:
            raise AttributeError(f"UILayout has no flag {name!r}")
        self._node.attrs[name] = value

    def _shown(self, flag):
        """Whether ``flag`` ('active' or 'enabled') holds here: a layout switched off switches off its content."""
        layout = self
        while layout is not None:
            if not layout._node.attrs.get(flag, True):
                return False
            layout = layout._parent
        return True

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
    def prop(self, data, property, text=None, icon='NONE', **_options):
        info = describe_prop(data, property)
        self._add("prop", **info, text=info["ui_name"] if text is None else text, icon=icon,
                  split=self.use_property_split, active=self._shown("active"), enabled=self._shown("enabled"))

    def prop_search(self, data, property, search_data, search_property, text=None, icon='NONE', **_options):
        if search_property not in search_data.bl_rna.properties:
            raise KeyError(f"{type(search_data).__name__} has no property {search_property!r}")
        self.prop(data, property, text=text, icon=icon)

    def prop_enum(self, data, property, value, text=None, icon='NONE', **_options):
        info = describe_prop(data, property)
        shown = _enum_name(data.bl_rna.properties[property], value)
        self._add("operator", idname="", text=shown if text is None else text, icon=icon,
                  enabled=True, depress=info["value"] == value)

    def label(self, text="", icon='NONE', **_options):
        self._add("label", text=text, icon=icon)

    def operator(self, operator, text=None, icon='NONE', depress=False, **_options):
        op = _operator(operator)
        rna = op.get_rna_type()  # KeyError for an unknown operator
        try:
            enabled = bool(op.poll())
        except Exception:  # a poll that needs a real UI context: shown enabled
            enabled = True
        node = self._add("operator", idname=operator, text=rna.name if text is None else text,
                         icon=icon, enabled=enabled and self._shown("enabled"), depress=depress)
        return OperatorProperties(node)

    def separator(self, factor=1.0, type='AUTO'):
        self._add("separator", factor=factor)

    def separator_spacer(self):
        self._add("spacer")

    def progress(self, factor=0.0, type='BAR', text=""):
        self._add("progress", factor=factor, text=text)

    def context_pointer_set(self, name, data):
        pass

    def template_list(self, listtype_name, list_id, dataptr, propname, active_dataptr, active_propname,
                      item_dyntip_propname="", rows=5, maxrows=5, **_options):
        """The list and, as rows, what the UIList's draw_item() draws for each shown item."""
        items = getattr(dataptr, propname)
        describe_prop(active_dataptr, active_propname)
        node = self._add("list", listtype=listtype_name, propname=propname, count=len(items))
        draw_item = getattr(getattr(bpy.types, listtype_name), "draw_item")
        stand_in = types.SimpleNamespace(layout_type='DEFAULT', filter_name="", use_filter_show=False,
                                         bitflag_filter_item=1 << 30, list_id=list_id)
        for index, item in enumerate(list(items)[:max(rows, maxrows)]):
            row = Node("row", align=False, index=index)
            node.children.append(row)
            draw_item(stand_in, self._context, RecordingLayout(row, self._context), dataptr, item, 0,
                      active_dataptr, active_propname, index)


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


class PanelRecord(_Tree):
    """A panel class and what its draw() recorded; ``children`` are its sub-panels."""

    def __init__(self, cls, tree, level=0):
        self.cls, self.tree, self.level = cls, tree, level
        self.label = getattr(cls, "bl_label", cls.__name__)
        self.closed = 'DEFAULT_CLOSED' in getattr(cls, "bl_options", ())
        self.children = []

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
    """The Panel classes the add-on registers from ``module``, in Blender's order (bl_order, then
    registration order)."""
    listed = [c for c in module.classes if issubclass(c, bpy.types.Panel)]
    return sorted(listed, key=lambda c: (getattr(c, "bl_order", 0), listed.index(c)))


def record_sidebar(context=None, module=panel):
    """Records every panel of ``module`` whose poll() passes; returns the top-level PanelRecords
    (sub-panels nested, in order)."""
    context = context or bpy.context
    classes = panel_classes(module)

    def record(cls, level):
        poll = getattr(cls, "poll", None)
        if poll is not None and not poll(context):
            return None
        rec = PanelRecord(cls, record_draw(cls.draw, cls, context), level)
        for child in classes:
            if getattr(child, "bl_parent_id", "") == cls.bl_idname:
                sub = record(child, level + 1)
                if sub is not None:
                    rec.children.append(sub)
        return rec

    ids = {c.bl_idname for c in classes}
    roots = [c for c in classes if getattr(c, "bl_parent_id", "") not in ids]
    return [r for r in (record(c, 0) for c in roots) if r is not None]


def record_preferences(prefs, context=None):
    """Records the add-on preferences' draw() for the real preferences object ``prefs``."""
    cls = type(prefs)
    return PanelRecord(cls, record_draw(cls.draw, cls, context or bpy.context, data=prefs))


def enabled_preferences():
    """The real add-on preferences: the add-on re-enabled through addon_utils (a registered-only
    add-on has none). Returns (prefs, undo) where undo() goes back to the registered-only state."""
    import addon_utils

    scorehmr_blender.unregister()
    addon_utils.enable(scorehmr_blender.__name__, default_set=True, handle_error=None)

    def undo():
        addon_utils.disable(scorehmr_blender.__name__, default_set=True, handle_error=None)
        scorehmr_blender.register()
    return preferences.get(bpy.context), undo


def fill_example(scene=None):
    """The scene's settings for the embedded example shot in Video mode, as a user would set them."""
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
    settings.use_footage_range = True  # as a new scene has it: every footage frame
    settings.views.clear()
    return settings


def fill_multiview(scene=None, extra_views=2):
    """Multi-View mode: the main shot (view 0) and ``extra_views`` further views, each with
    footage, keypoints and its own Blender camera; the first extra view selected."""
    scene = scene or bpy.context.scene
    settings = fill_example(scene)
    settings.mode = 'MULTI_VIEW'
    for index in range(extra_views + 1):
        inputs = settings if index == 0 else settings.views.add()
        if index:
            inputs.footage_path = f"{MULTIVIEW_FOLDER}/cam{index}.mp4"
            inputs.keypoints_path = f"{MULTIVIEW_FOLDER}/cam{index}_keypoints.json"
        camera = bpy.data.objects.new(f"Cam {index}", bpy.data.cameras.new(f"Cam {index}"))
        scene.collection.objects.link(camera)
        inputs.camera_object = camera
    settings.active_view = 0
    return settings


# -- the text outline (the README's picture of the panel) -------------------------------------

def _item_text(node):
    """One recorded item as outline text; None for items with no text (separators)."""
    a = node.attrs
    if node.kind == "prop":
        if a["type"] == 'BOOLEAN':
            text = f"[{'x' if a['value'] else ' '}] {a['text']}"
        else:
            shown = a["display"] or "(empty)"
            text = f"{a['text']}: {shown}" if a["text"] else shown
        return text + ("" if a["active"] and a["enabled"] else " (inactive)")
    if node.kind == "label":
        return ("(!) " if a["icon"] == 'ERROR' else "") + a["text"]
    if node.kind == "operator":
        return f"[{a['text']}]" + ("" if a["enabled"] else " (greyed out)")
    if node.kind == "progress":
        return f"{a['factor']:.0%} {a['text']}"
    if node.kind == "list":
        return f"list ({a['count']} items)"
    if node.kind == "other":
        return f"<{a['method']}>"
    return None


def _outline_lines(node, indent):
    """Containers are flattened; a row's items share one line; a list's rows are indented."""
    if node.kind == "row":
        texts = (_item_text(child) for child in node.walk() if child is not node)
        parts = [text for text in texts if text]
        return [indent + "  ".join(parts)] if parts else []
    if node.kind in {"layout", "column", "box", "split"}:
        return [line for child in node.children for line in _outline_lines(child, indent)]
    text = _item_text(node)
    lines = [indent + text] if text else []
    if node.kind == "list":
        lines += [line for row in node.children for line in _outline_lines(row, indent + "  ")]
    return lines


def outline(records):
    """PanelRecords (and their sub-panels) as indented text: one line per widget or row."""
    lines = []
    for record in records:
        for rec in record.walk():
            indent = "  " * rec.level
            lines.append(f"{indent}\u25be {rec.label}" + (" (closed by default)" if rec.closed else ""))
            lines += _outline_lines(rec.tree, indent + "  ")
    return "\n".join(lines) + "\n"


def example_outline():
    """The outline of the sidebar with the example shot filled in (Video mode); the add-on registered."""
    fill_example()
    return outline(record_sidebar())


def readme_outline(text):
    """The panel outline block of the README's text; None when its markers are missing."""
    match = README_BLOCK.search(text)
    return match.group(2) if match else None
