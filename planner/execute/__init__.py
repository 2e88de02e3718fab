"""Execution: the commands that change the world, and the state they keep on disk.

One session kernel (``session``: lock, journal recorder, Ctrl-C handling, access to Talos and
Omni; ``secrets``: the scrubber; ``errors``) under four peers: ``apply``, ``rollback``, ``abort``
and ``unlock``. Arrows point down only: ``apply`` calls ``rollback`` to undo a failed run; no
peer imports ``apply``. The state files live here too: ``journal``, ``lock``, ``backup`` and
``rollbackfile``.
"""
