from kubejobs.inpod.entry import main

main()
