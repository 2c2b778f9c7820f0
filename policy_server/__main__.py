"""``python -m policy_server ...`` is ``wovr serve ...``."""

import sys

from wovr_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
