"""`python -m study ...` entry point."""

from study.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
