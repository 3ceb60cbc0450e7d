"""``python -m tagteller``: the same command line as the ``tagteller`` console script."""

from tagteller.cli import main

if __name__ == "__main__":
    main()
