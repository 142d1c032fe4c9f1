"""``python -m hpcpipe``: the command line (:mod:`hpcpipe.cli`)."""

import sys

from hpcpipe.cli import main

sys.exit(main())
