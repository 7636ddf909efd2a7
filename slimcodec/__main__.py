import sys

from slimcodec.cli import main

sys.exit(main())
