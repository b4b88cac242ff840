import sys

from mtls_client.cli import main

sys.exit(main())
