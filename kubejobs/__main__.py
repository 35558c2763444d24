from kubejobs.cli import main

main()
