from mailward.cli import main

raise SystemExit(main())
