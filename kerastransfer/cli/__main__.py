"""`python -m kerastransfer.cli`."""

from kerastransfer.cli import main

if __name__ == "__main__":
    main()
