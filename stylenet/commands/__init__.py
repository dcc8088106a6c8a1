"""The command lines: one thin module per command, each a Hydra app over `configs/<command>.yaml`.

`python train.py`, `python scripts/<command>.py` and the `stylenet-<command>` console entry
points all call the same `main(argv=None) -> exit code` here; `app.run` is the one runner.
"""
