"""Compute side of the editor: scenes, formats, rendering, masks, guidance and edit jobs. No UI imports."""
