from cronkeeper.cli import main

main()
