"""Text outline of the add-on's N-panel on the example shot, from the panels' real draw() calls.

    .venv/bin/python scripts/panel_outline.py            # print it
    .venv/bin/python scripts/panel_outline.py --readme   # write it into README.md (between its markers)

A screenshot needs a GUI build of Blender 4.2+, and the bpy module is background-only, so the
README shows this outline (tests/addon/test_addon_panel_layout.py checks that it is current).
"""
import argparse
import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scorehmr_blender
from tests.support import layout_recorder as recorder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", action="store_true", help="write the outline into README.md")
    args = parser.parse_args(argv)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scorehmr_blender.register()
    text = recorder.example_outline()
    if not args.readme:
        print(text, end="")
        return 0
    readme = recorder.README.read_text()
    if recorder.readme_outline(readme) is None:
        print("README.md has no panel outline block", file=sys.stderr)
        return 1
    recorder.README.write_text(recorder.README_BLOCK.sub(lambda m: m.group(1) + text + m.group(3), readme))
    return 0


if __name__ == "__main__":
    sys.exit(main())
