"""The library side of each experiment: one module per ``experiments/<name>.py``.

Multi-run studies (data crimes, scarce data, uncertainty, supervision) run their
sub-runs through `fdl.studies.harness`, which also loads config files and turns on
the compilation cache. Nothing here is imported by `fdl.tasks`, `fdl.train` or below.
"""
