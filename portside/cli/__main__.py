"""`python -m portside.cli`: the same as the `portside` command."""

from portside.cli import main

main()
