"""``python -m videoclf``: the ``videoclf`` command."""
import sys

from videoclf.cli.main import main

sys.exit(main())
