"""The compute side of the editor; never imports UI code. Read it by layer, lowest first (the README's
Architecture section has the table; tests/test_layers.py holds the rules):

- scene.py, camera.py, up.py, sh.py, rotate.py, colour.py   the data types and their conventions
- io/ (formats), render/ (drawing a scene)
- guidance/ (diffusion priors and losses), optimize/ (what both loops share), masks/ (selection and lifting)
- edit/, generate/                                        the two jobs
- evaluate/                                               measuring an edit
- worker/                                                 the service thread: history, models, queue, run_job
- batch/, cli/, __main__.py                               many jobs; the command line
"""
