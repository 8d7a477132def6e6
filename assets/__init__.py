"""Bundled assets: the default scene (see assets/default_scene.py) and the script that builds it."""
