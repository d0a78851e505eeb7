"""`python cli.py ...` from a checkout runs the same command line as the installed `adapler` command."""
from adapler.cli import app, main, run_cli  # noqa: F401  (tests and scripts import these from here)

if __name__ == "__main__":
    main()
