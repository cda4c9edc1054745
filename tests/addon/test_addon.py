"""The Blender add-on registers, draws and unregisters cleanly in real bpy."""

import ast
import sys
import types
from pathlib import Path

import bpy
import addon_utils
import pytest

# blender_versions (repeated on 4.2 and 4.5 LTS): registration, preferences and draw() into a real UILayout: the RNA
# and UI API change between versions.
pytestmark = pytest.mark.blender_versions

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import scorehmr_blender  # noqa: E402 -- after the repository root is on sys.path
from scorehmr_blender import operators, panel, preferences, properties  # noqa: E402 -- after the repository root is on sys.path

ADDON = scorehmr_blender.__name__


@pytest.fixture(scope="module", autouse=True)
def addon():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scorehmr_blender.register()
    yield scorehmr_blender
    if panel.REFINEMOTION_PT_main.is_registered:
        scorehmr_blender.unregister()
    bpy.ops.wm.read_factory_settings(use_empty=True)


def assert_unregistered():
    assert not hasattr(bpy.types, "REFINEMOTION_PT_main")
    assert not hasattr(bpy.types, "REFINEMOTION_OT_import_result")
    assert operators.menu_import not in _import_menu_functions()
    assert not hasattr(bpy.types.Scene, "refine_motion")
    assert not any(cls.is_registered for cls in scorehmr_blender.classes)


def _import_menu_functions():
    return getattr(bpy.types.TOPBAR_MT_file_import, "_dyn_ui_initialize", list)()


# -- registration -------------------------------------------------------------

def test_panel_registered_in_3d_view_sidebar():
    cls = bpy.types.REFINEMOTION_PT_main
    assert cls is panel.REFINEMOTION_PT_main
    assert cls in bpy.types.Panel.__subclasses__()
    assert cls.bl_space_type == 'VIEW_3D'
    assert cls.bl_region_type == 'UI'
    assert cls.bl_category == "Refine Motion"
    assert cls.bl_label == "Refine Motion"


def test_import_operator_registered_and_in_file_import_menu():
    cls = bpy.types.REFINEMOTION_OT_import_result
    assert cls is operators.REFINEMOTION_OT_import_result
    assert cls.bl_idname == "refinemotion.import_result"
    assert cls.bl_label == "Import Refined Motion"
    assert {'REGISTER', 'UNDO'} <= cls.bl_options
    assert bpy.ops.refinemotion.import_result.poll()
    assert operators.menu_import in _import_menu_functions()


def test_preferences_registered_under_package_name():
    cls = preferences.RefineMotionPreferences
    assert cls.is_registered
    assert cls in bpy.types.AddonPreferences.__subclasses__()
    assert cls.bl_idname == ADDON
    props = cls.bl_rna.properties
    assert props["smpl_path"].subtype == 'FILE_PATH'
    assert props["worker_python"].subtype == 'FILE_PATH'


def _imports(path, module_level_only):
    """Top-level names of the modules a file imports (relative imports as '.name')."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import a, b / from .a import b
                yield from (["." + node.module.split(".")[0]] if node.module
                            else ["." + alias.name for alias in node.names])
            else:
                yield node.module.split(".")[0]


def _absolute_imports(path):
    """(module, at module level) of every absolute import in ``path``: ``from backend import service`` gives
    'backend.service'."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, id(node) in top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = ([f"{node.module}.{alias.name}" for alias in node.names] if node.module == "backend"
                     else [node.module])
            yield from ((name, id(node) in top) for name in names)


def test_addon_never_imports_the_engine_or_torch():
    """The seam (issue 23): the add-on imports the numpy-only contract by ordinary imports anywhere; the engine
    proper (service, detector, body model files) only inside functions of runner/, which runs jobs in this
    Python; torch, smplx, OpenCV and ray (build.py --ray hands clips to the runner in the worker) never."""
    package = ROOT / "scorehmr_blender"
    for path in package.rglob("*.py"):
        in_runner = path.parent.name == "runner"
        for name, module_level in _absolute_imports(path):
            root = name.split(".")[0]
            assert root not in {"torch", "smplx", "cv2", "ray"}, f"{path.name} imports {name}"
            if root == "backend" and not name.startswith("backend.contract"):
                assert in_runner and not module_level, f"{path.relative_to(package)} imports {name}"


def _local_modules(path, package):
    """Module-level relative imports of ``path`` as files of ``package`` (module.py or pkg/__init__.py)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            if node.module:
                base = base.joinpath(*node.module.split("."))
            targets = [base / alias.name for alias in node.names] if not node.module else [base]
            targets += [base / alias.name for alias in node.names if (base / f"{alias.name}.py").is_file()]
            for target in targets:
                for file in (target.with_suffix(".py"), target / "__init__.py"):
                    if file.is_file():
                        yield file


def test_enabling_the_addon_loads_no_numpy_modules():
    # numpy-based modules (result, convert, ...) load when an operator first runs.
    package = ROOT / "scorehmr_blender"
    seen, todo = set(), [package / "__init__.py"]
    while todo:
        path = todo.pop()
        seen.add(path)
        for name in _imports(path, module_level_only=True):
            assert name != "numpy", f"{path.relative_to(package)} imports numpy when the add-on is enabled"
        todo += [file for file in _local_modules(path, package) if file not in seen]
    names = {str(p.relative_to(package).with_suffix("")) for p in seen}
    assert {"__init__", "operators", "panel", "preferences", "properties", "runner/placement"} <= names
    assert not names & {"result", "convert", "armature", "keyframes", "camera", "importer"}


# -- scene settings -----------------------------------------------------------

def test_scene_settings_defaults():
    settings = bpy.context.scene.refine_motion
    assert isinstance(settings, properties.RefineMotionSettings)
    assert settings.mode == 'VIDEO'
    assert {item.identifier for item in settings.bl_rna.properties["mode"].enum_items} == {
        'SINGLE_FRAME', 'VIDEO', 'MULTI_VIEW'}
    assert settings.smoothing == pytest.approx(1.0)  # the engine's default weight, as build.py's default
    assert settings.keypoint_trust == pytest.approx(1.0)
    assert (settings.frame_start, settings.frame_end) == (1, 250)


def test_scene_settings_can_be_set():
    scene = bpy.data.scenes.new("settings_test")
    try:
        settings = scene.refine_motion
        settings.mode = 'MULTI_VIEW'
        settings.smoothing = 0.25
        settings.keypoint_trust = 3.0  # clamped to the hard max
        settings.frame_end = 40
        settings.frame_start = 10
        assert settings.mode == 'MULTI_VIEW'
        assert settings.smoothing == pytest.approx(0.25)
        assert settings.keypoint_trust == pytest.approx(2.0)
        assert (settings.frame_start, settings.frame_end) == (10, 40)

        settings.frame_start = 60  # past the end: the end follows
        assert (settings.frame_start, settings.frame_end) == (60, 60)

        with pytest.raises(TypeError):
            settings.mode = 'NOT_A_MODE'
        # Settings are per scene.
        assert bpy.context.scene.refine_motion.mode == 'VIDEO'
    finally:
        bpy.data.scenes.remove(scene)


# -- drawing ------------------------------------------------------------------

class CheckedLayout:
    """Wraps a real UILayout. Blender only prints a warning when prop() names a
    missing property, so this fails the test instead; it also records labels."""

    def __init__(self, layout, log):
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        attr = getattr(self._layout, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if name == "prop":
                data, prop_name = args[:2]
                assert prop_name in data.bl_rna.properties, f"no property {prop_name!r}"
                self._log["props"].append(prop_name)
            elif name == "label":
                self._log["labels"].append(kwargs.get("text", ""))
            elif name == "operator":
                category, op = args[0].split(".")
                getattr(getattr(bpy.ops, category), op).get_rna_type()  # KeyError if unknown
                self._log["operators"].append(args[0])
            result = attr(*args, **kwargs)
            if isinstance(result, bpy.types.UILayout):
                return CheckedLayout(result, self._log)
            return result
        return call

    def __setattr__(self, name, value):
        setattr(self._layout, name, value)


@pytest.fixture(scope="module")
def real_layout():
    """A real UILayout without a GUI: the layout of a popup menu that is begun
    but never shown. Ending it needs a real window (it crashes headless), so it
    is left open; Blender then reports a few unfreed memory blocks at exit."""
    try:
        popup = bpy.context.window_manager.popmenu_begin__internal("Refine Motion test", icon='NONE')
        layout = popup.layout
    except (AttributeError, RuntimeError, TypeError) as ex:
        pytest.skip(f"no UILayout can be made headless in this Blender: {ex}")
    if not isinstance(layout, bpy.types.UILayout):
        pytest.skip("no UILayout can be made headless in this Blender")
    return layout


def draw_panel(layout):
    log = {"props": [], "labels": [], "operators": []}
    fake_panel = types.SimpleNamespace(layout=CheckedLayout(layout, log))
    panel.REFINEMOTION_PT_main.draw(fake_panel, bpy.context)
    return log


def test_panel_draws_into_real_layout(real_layout):
    """The tab's header panel draws nothing of its own: its sub-panels are the steps (Refine first)."""
    settings = bpy.context.scene.refine_motion
    settings.mode = 'VIDEO'
    assert draw_panel(real_layout) == {"props": [], "labels": [], "operators": []}
    log = {"props": [], "labels": [], "operators": []}
    panel.draw_tuning(CheckedLayout(real_layout, log), bpy.context)
    assert any("Free default (Anny-based SMPL format)" in text for text in log["labels"])
    assert log["props"][:2] == ["keypoint_trust", "smoothing"]


# -- preferences as an enabled add-on, and re-registration ---------------------

def test_enabled_addon_preferences_name_the_user_smpl_file(real_layout):
    scorehmr_blender.unregister()
    try:
        assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is scorehmr_blender
        prefs = preferences.get(bpy.context)
        assert prefs is not None and prefs.smpl_path == ""
        assert preferences.body_model_label(prefs) == preferences.DEFAULT_BODY_MODEL

        prefs.smpl_path = "/models/SMPL_NEUTRAL.pkl"
        assert preferences.body_model_label(prefs) == "User SMPL: SMPL_NEUTRAL.pkl"
        log = {"props": [], "labels": [], "operators": []}
        panel.draw_tuning(CheckedLayout(real_layout, log), bpy.context)
        assert any("SMPL_NEUTRAL.pkl" in text for text in log["labels"])
    finally:
        addon_utils.disable(ADDON, default_set=True, handle_error=None)
        assert_unregistered()
        assert preferences.get(bpy.context) is None
        scorehmr_blender.register()


def test_unregister_removes_everything_and_register_again_works():
    scorehmr_blender.unregister()
    assert_unregistered()

    scorehmr_blender.register()
    assert bpy.types.REFINEMOTION_PT_main.bl_category == "Refine Motion"
    assert all(cls.is_registered for cls in scorehmr_blender.classes)
    settings = bpy.context.scene.refine_motion
    settings.smoothing = 0.75
    assert settings.smoothing == pytest.approx(0.75)
