"""The commands of ``hpcpipe``: one module each, listed by :mod:`hpcpipe.cli`.

Each module ``hpcpipe.commands.<name>`` provides ``add_<name>_command(subparsers)``, which
builds the command's parser and sets ``handler`` (``parser.set_defaults(handler=...)``): a
small function taking the parsed arguments and returning the exit status. The modules import
the standard library and :mod:`hpcpipe.argtypes`, :mod:`hpcpipe.commands.options` and
:mod:`hpcpipe.catalog`'s constants only; a handler imports its driver (and so the science)
when the command runs, so that ``hpcpipe --help`` and usage errors answer at once.

The commands that take a repository and the options of every command-line task (``drp``,
``alerts``, ``run``) parse those in a second step, in their module, once the production or
task (and so its config) is known.
"""
