"""3D masks: which Gaussians belong to the part the user means.

A mask is a float tensor [N] of per-Gaussian weights in [0, 1] (several named parts: engine/masks/parts.py).
- compositing.py  sparse compositing weights (how much each Gaussian contributes to each pixel), the common ground
- pick.py         ray pick from a click; the 3D point under a pixel
- selection.py    brush, rectangle (visible-only or see-through), sphere and box volumes
- ops.py          add / subtract / intersect / invert, grow / shrink, small-island removal
- parts.py        named parts, save / load (.npy + .json)
- views_io.py     multi-view 2D masks in memory and on disk (cameras.json + PNGs)
- lift_vote.py    2D -> 3D lifting by visibility-weighted voting (baseline)
- galp.py         2D -> 3D lifting with 3D-GALP (robust to wrong views; calibrated: cut at 0.5)
- galp_evidence.py  3D-GALP's vote, certainty and view trust (which views' masks to believe)
- galp_fill.py    3D-GALP's fill of weakly seen and unseen Gaussians (support prior, colour kernel)
- sam.py          segment-anything on rendered views; multiview.py: one click -> many views -> lift
- attention_maps.py  a diffusion UNet's cross-attention to chosen prompt words, captured per view
- attention.py    select a part by naming it: those attention maps in many views, lifted with 3D-GALP
- tasks.py        the editor's long mask tasks (SAM click -> lift; select by text) as plain functions the
                  engine worker runs
- evaluation.py   ground-truth masks, SAM-like corruptions, 3D IoU (tests and bench)
"""
