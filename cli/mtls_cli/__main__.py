from mtls_cli.cli import main

raise SystemExit(main())
