"""The sub-commands of ``exda``, one module per command, named after it (``exda restore`` lives in
:mod:`exda.commands.restore`). Each exposes ``add_arguments(parser)`` and ``run(args) -> int``; it parses
and checks its options and calls the library (``exda.engine``, ``exda.inference``, ``exda.analysis``, ...).
Options that several commands share are defined once, in :mod:`exda.commands.options`.
"""
