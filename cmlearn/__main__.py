from cmlearn.cli import main

raise SystemExit(main())
