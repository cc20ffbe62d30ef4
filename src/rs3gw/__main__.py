from rs3gw.cli.server import main

main()
