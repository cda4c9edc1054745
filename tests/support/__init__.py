"""What the tests share: Blender scenes, the layout recorder, result files, character rigs, SMPL stand-ins."""
