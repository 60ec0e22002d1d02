from autoswarm.cli import main

main()
