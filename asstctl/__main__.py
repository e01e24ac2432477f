from asstctl.cli import main

main()
