import sys

from sspnet.cli import main

sys.exit(main())
