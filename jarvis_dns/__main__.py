import sys

from jarvis_dns.cli import main

sys.exit(main())
