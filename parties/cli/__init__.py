"""The ``smpc`` command line: one parser, one line per error, ``--json`` output.

Owns: the commands (:mod:`.main`) and the party operator's audit commands (:mod:`.audit`).
May import anything of the runtime (it is the top layer).
"""
