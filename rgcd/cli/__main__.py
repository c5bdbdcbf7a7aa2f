"""`python -m rgcd.cli ...`, as child processes and tests start it."""

from rgcd.cli import main

main()
