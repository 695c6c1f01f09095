from inferlane.cli.main import main

raise SystemExit(main())
