from queuer.cli import main

main()
